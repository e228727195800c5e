"""The benchmarks' own arithmetic: the non-local block timed is the one the cost formula counts."""

import os

import numpy as np
import pytest

from bench import common, ema_vs_nonlocal
from ema_keras import cost


@pytest.mark.parametrize("channels, height, width", [(8, 5, 6), (512, 65, 65)])
def test_non_local_block_cost_matches_formula(channels, height, width):
    block = ema_vs_nonlocal.NonLocalBlock()
    block.build((1, height, width, channels))
    counted = ema_vs_nonlocal.non_local_macs(block, height, width)
    expected = cost.non_local_cost(channels, height, width)
    assert counted == expected
    # PyTorch-style parameters: every weight but BatchNorm's moving statistics.
    assert block.count_params() - 2 * channels == expected.params


def test_non_local_block_computes_embedded_gaussian_attention():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 6)).astype("float32")
    block = ema_vs_nonlocal.NonLocalBlock()
    block.build(x.shape)
    for weight in block.weights:
        if weight.trainable:
            weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))
    got = np.asarray(block(x, training=False))

    def conv(layer, value):
        return value @ np.asarray(layer.kernel)[0, 0] + np.asarray(layer.bias)

    flat = x.reshape(2, 12, 6)
    theta, phi, g = (conv(layer, flat) for layer in (block.theta, block.phi, block.g))
    logits = theta @ phi.transpose(0, 2, 1)
    attention = np.exp(logits - logits.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    y = conv(block.output_conv, attention @ g)
    norm = block.output_norm
    y = (y - np.asarray(norm.moving_mean)) / np.sqrt(np.asarray(norm.moving_variance) + 1e-5)
    y = y * np.asarray(norm.gamma) + np.asarray(norm.beta)
    np.testing.assert_allclose(got, (flat + y).reshape(x.shape), rtol=1e-4, atol=1e-4)


def test_ema_vs_nonlocal_attention_ratio_is_n_over_2t_plus_1_k():
    _, ema = ema_vs_nonlocal.block_cost("ema", 512, 65, 64, 3)
    _, local = ema_vs_nonlocal.block_cost("non_local", 512, 65, 64, 3)
    assert local.macs / ema.macs == pytest.approx(65 * 65 / (7 * 64))
    whole, _ = ema_vs_nonlocal.block_cost("non_local", 512, 65, 64, 3)
    assert whole == cost.non_local_cost(512, 65, 65)


def _allocate_and_measure(num_bytes):
    with common.PeakMemory() as peak:
        buffer = np.ones(num_bytes // 8)
        del buffer
    return os.getpid(), peak.bytes


def test_peak_memory_of_an_allocation_in_a_fresh_process():
    pid, peak = common.run_isolated(_allocate_and_measure, 64 * 2**20)
    assert pid != os.getpid()
    assert 60 * 2**20 <= peak <= 80 * 2**20


def test_time_calls_and_table():
    calls = []
    timing = common.time_calls(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and len(timing.seconds) == 3
    assert timing.best <= timing.median
    with pytest.raises(ValueError, match="repeats"):
        common.time_calls(lambda: None, repeats=0)
    table = common.markdown_table(["a", "b"], [["x", "1.0"]])
    assert table.splitlines() == ["| a | b |", "|---|---:|", "| x | 1.0 |"]


def test_profile_census_counts_every_layer_once_with_its_flops(monkeypatch):
    from bench import inference_profile
    from ema_keras.layers import tensorflow_ops
    from ema_keras.models import DilatedResNet, EMANetBackbone, EMANetImageSegmenter

    backbone = DilatedResNet(
        block_counts=[1, 1, 3, 1], width=8, output_stride=8, image_shape=(33, 33, 3)
    )
    model = EMANetImageSegmenter(
        backbone=EMANetBackbone(
            image_encoder=backbone, head_channels=16, classifier_channels=8, ema_num_bases=4
        ),
        num_classes=3,
    )
    rows = inference_profile.census(model)
    leaves = list(inference_profile._leaf_layers(model))
    assert sum(row[5] for row in rows) == len(leaves)
    kinds = {row[0] for row in rows}
    assert {"BatchNorm", "ReLU", "residual add", "EMA unit", "dilated 3x3 conv"} <= kinds
    # Stage 3's last two blocks share their shapes: one row, counted twice.
    dilated = [row for row in rows if row[1].startswith("dilated 3x3 conv 32->32 d2")]
    assert [row[5] for row in dilated] == [2]
    head = next(row for row in rows if row[1].startswith("3x3 conv 256->16"))
    assert head[4] == 2 * 5 * 5 * 9 * 256 * 16  # 33 -> 17 -> 9 -> 5 at output stride 8
    lowered = ["BatchToSpaceND", "Conv2D", "SpaceToBatchND"]
    # Where TensorFlow has the dilated op's gradient (oneDNN), one op; elsewhere Keras' lowering.
    monkeypatch.setattr(tensorflow_ops, "dilated_conv2d_has_gradient", lambda: True)
    assert inference_profile.dilated_conv_ops() == {"Conv2D": lowered, "DilatedConv2D": ["Conv2D"]}
    monkeypatch.setattr(tensorflow_ops, "dilated_conv2d_has_gradient", lambda: False)
    assert inference_profile.dilated_conv_ops() == {"Conv2D": lowered, "DilatedConv2D": lowered}


def test_inference_bench_agreement_and_runtimes():
    from bench import model_inference
    from ema_keras.models import DilatedResNet, EMANetBackbone, EMANetImageSegmenter

    images = model_inference.demo_images(2, 24)
    assert len(images) == 2 and images[0].shape == (24, 24, 3) and images[0].dtype == np.uint8
    assert not np.array_equal(images[0], images[1])
    model = EMANetImageSegmenter(
        backbone=EMANetBackbone(
            image_encoder=DilatedResNet(block_counts=[1, 1, 1, 1], width=8), head_channels=16,
            classifier_channels=8, ema_num_bases=4,
        ),
        num_classes=3,
    )  # fmt: skip
    runners, _, graphs = model_inference.keras_runners(
        model, images[0][None].astype("float32"), breakdown=False,
        runtimes=["keras_graph", "keras_folded", "keras_bfloat16"],
    )  # fmt: skip
    assert set(graphs) == {"keras_graph", "keras_folded", "keras_bfloat16"}
    reference = model_inference.keras_labels(graphs["keras_graph"], model, images)
    folded = model_inference.keras_labels(graphs["keras_folded"], model, images)
    assert reference[0].shape == (24, 24)
    assert model_inference.agreement(folded, reference) > 0.999
    assert runners["keras_bfloat16"]().shape == (1, 24, 24, 3)


def test_keras_dilation_lowering_traces_space_to_batch_and_is_restored(monkeypatch):
    import tensorflow as tf

    from bench import inference_profile
    from ema_keras.layers import DilatedConv2D, tensorflow_ops

    # As where TensorFlow has the dilated gradient (oneDNN), whatever this CPU is.
    monkeypatch.setattr(tensorflow_ops, "dilated_conv2d_has_gradient", lambda: True)
    conv = DilatedConv2D(4, 3, padding="same", dilation_rate=2)
    x = tf.random.stateless_normal((1, 11, 9, 3), seed=(0, 1))
    expected = conv(x, training=False).numpy()
    with inference_profile.keras_dilation_lowering():
        graph = tf.function(lambda v: conv(v, training=False)).get_concrete_function(
            tf.TensorSpec(x.shape)
        )
    assert "SpaceToBatchND" in {op.type for op in graph.graph.get_operations()}
    np.testing.assert_allclose(graph(x).numpy(), expected, atol=1e-5)
    assert conv._runs_native_dilation()  # restored
