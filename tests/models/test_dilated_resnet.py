import keras
import numpy as np
import pytest

from ema_keras.models import DilatedResNet, dilation_scheme

TINY = dict(block_counts=[1, 1, 1, 1], width=8)

# The official EMANet scheme (XiaLiPKU/EMANet network.py), block by block:
# (stride, dilation) of every bottleneck's 3x3 conv, for ResNet-101.
OFFICIAL_101 = {
    8: [
        [(1, 1)] * 3,
        [(2, 1)] + [(1, 1)] * 3,
        [(1, 1)] + [(1, 2)] * 22,
        [(1, 2), (1, 8), (1, 16)],
    ],
    16: [
        [(1, 1)] * 3,
        [(2, 1)] + [(1, 1)] * 3,
        [(2, 1)] + [(1, 1)] * 22,
        [(1, 1), (1, 4), (1, 8)],
    ],
    32: [
        [(1, 1)] * 3,
        [(2, 1)] + [(1, 1)] * 3,
        [(2, 1)] + [(1, 1)] * 22,
        [(2, 1), (1, 1), (1, 1)],
    ],
}


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_dilation_scheme_matches_official(output_stride):
    assert dilation_scheme([3, 4, 23, 3], output_stride) == OFFICIAL_101[output_stride]


def test_dilation_scheme_without_multi_grid():
    assert dilation_scheme([1, 1, 2, 3], 8, multi_grid=None)[3] == [(1, 2), (1, 4), (1, 4)]


@pytest.mark.parametrize(
    "output_stride, expected",
    [
        # stage 3 (conv4), stage 4 (conv5): block -> (strides, dilation)
        (8, {"conv4": [(1, 1), (1, 2)], "conv5": [(1, 2), (1, 8), (1, 16)]}),
        (16, {"conv4": [(2, 1), (1, 1)], "conv5": [(1, 1), (1, 4), (1, 8)]}),
        (32, {"conv4": [(2, 1), (1, 1)], "conv5": [(2, 1), (1, 1), (1, 1)]}),
    ],
)
def test_built_layers_have_official_strides_and_dilations(output_stride, expected):
    model = DilatedResNet(block_counts=[1, 2, 2, 3], width=8, output_stride=output_stride)
    for stage, blocks in expected.items():
        for index, (stride, dilation) in enumerate(blocks):
            conv = model.get_layer(f"{stage}_block{index + 1}_2_conv")
            assert conv.strides == (stride, stride), conv.name
            assert conv.dilation_rate == (dilation, dilation), conv.name
            # The stride sits on the 3x3, never on the 1x1s.
            assert model.get_layer(f"{stage}_block{index + 1}_1_conv").strides == (1, 1)
            assert (f"{stage}_block{index + 1}_2_pad" in [l.name for l in model.layers]) == (
                stride == 2
            )
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)


@pytest.mark.parametrize(
    "output_stride, sizes",
    [(8, (129, 65, 65, 65)), (16, (129, 65, 33, 33)), (32, (129, 65, 33, 17))],
)
def test_output_stride_on_513_input(output_stride, sizes):
    model = DilatedResNet(output_stride=output_stride, image_shape=(513, 513, 3), **TINY)
    for name, size in zip(("P2", "P3", "P4", "P5"), sizes):
        assert tuple(model.output[name].shape) == (None, size, size, model.feature_channels[name])


def test_eager_call_on_variable_sizes():
    model = DilatedResNet(output_stride=8, **TINY)
    for height, width in ((64, 64), (33, 50)):
        images = np.random.default_rng(0).normal(size=(2, height, width, 3)).astype("float32")
        features = model(images)
        expected_p5 = (2, -(-height // 8), -(-width // 8), 256)
        assert tuple(features["P5"].shape) == expected_p5
        assert tuple(features["P2"].shape) == (2, -(-height // 4), -(-width // 4), 32)


def test_strided_convs_pad_symmetrically_like_pytorch():
    # A 3x3/2 conv with kernel 1 at its centre only and padding 1 (PyTorch)
    # picks input pixels 0, 2, 4, ... ; Keras "same" would pick 1, 3, 5, ...
    model = DilatedResNet(output_stride=32, stem="deep", include_preprocessing=False, **TINY)
    conv = model.get_layer("conv1_1_conv")
    kernel = np.zeros(conv.kernel.shape, "float32")
    kernel[1, 1, 0, 0] = 1.0
    conv.kernel.assign(kernel)
    probe = keras.Model(model.input, conv.output)
    images = np.arange(2 * 8 * 8 * 3, dtype="float32").reshape(2, 8, 8, 3)
    np.testing.assert_array_equal(probe(images).numpy()[..., 0], images[:, ::2, ::2, 0])


KERAS_RESNETS = {
    50: keras.applications.ResNet50,
    101: keras.applications.ResNet101,
    152: keras.applications.ResNet152,
}


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_standard_stem_matches_keras_applications(depth):
    ours = DilatedResNet(depth=depth, stem="standard", output_stride=8)
    reference = KERAS_RESNETS[depth](include_top=False, weights=None)
    assert ours.count_params() == reference.count_params()
    # Same weights under the same layer names, in the same order: `.h5`
    # weights load by name and by topological order.
    assert [(w.path, tuple(w.shape)) for w in ours.weights] == [
        (w.path, tuple(w.shape)) for w in reference.weights
    ]


def test_deep_stem_differs_from_keras_applications_by_the_stem_only():
    deep = DilatedResNet(depth=50, stem="deep")
    reference = keras.applications.ResNet50(include_top=False, weights=None)
    bn = 4  # gamma, beta, moving mean and variance per channel
    conv_biases = sum(
        layer.bias.shape[0] for layer in reference.layers if isinstance(layer, keras.layers.Conv2D)
    )
    standard_stem = 7 * 7 * 3 * 64 + bn * 64
    deep_stem = 3 * 3 * 3 * 64 + bn * 64 + 3 * 3 * 64 * 64 + bn * 64 + 3 * 3 * 64 * 128 + bn * 128
    # Stage 1's first block then reads 128 channels instead of 64: its first
    # 1x1 conv (64 filters) and its shortcut (256 filters) grow.
    first_block = (128 - 64) * 64 + (128 - 64) * 256
    expected = reference.count_params() - conv_biases - standard_stem + deep_stem + first_block
    assert deep.count_params() == expected
    # Weighted layers beyond the stem are named as in keras.applications.
    def weighted(model):
        return {layer.name for layer in model.layers if layer.weights}

    assert weighted(deep) - weighted(reference) == {
        "conv1_1_conv", "conv1_1_bn", "conv1_2_conv", "conv1_2_bn", "conv1_3_conv"
    }  # fmt: skip
    assert weighted(reference) - weighted(deep) == {"conv1_conv"}


def test_batch_norm_settings_and_synchronization(mirrored_strategy):
    model = DilatedResNet(batch_norm_momentum=0.97, **TINY)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and all(n.epsilon == 1e-5 and n.momentum == 0.97 for n in norms)
    assert not any(n.synchronized for n in norms)
    assert model.get_config()["batch_norm_synchronized"] is False
    with mirrored_strategy.scope():
        synced = DilatedResNet(**TINY)
    norms = [l for l in synced.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert all(n.synchronized for n in norms)
    assert synced.get_config()["batch_norm_synchronized"] is True


def test_config_round_trip_and_mixed_precision():
    model = DilatedResNet(stem="standard", output_stride=16, multi_grid=(1, 2, 3), **TINY)
    config = model.get_config()
    clone = DilatedResNet.from_config(config)
    assert clone.get_config() == config
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    half = DilatedResNet(**TINY)
    features = half(np.zeros((1, 32, 32, 3), "float32"))
    assert features["P5"].dtype == "float16"
    assert all(w.dtype == "float32" for w in half.weights)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth=34), "depth"),
        (dict(output_stride=12), "output_stride"),
        (dict(stem="wide"), "stem"),
        (dict(block_counts=[1, 1, 1]), "block_counts"),
        (dict(block_counts=[1, 1, 1, 4], output_stride=8), "multi_grid"),
        (dict(width=0), "width"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DilatedResNet(**kwargs)


def test_seed_reproduces_the_model_and_differs_per_layer():
    first = DilatedResNet(block_counts=[1, 2, 1, 1], width=8, seed=3)
    second = DilatedResNet(block_counts=[1, 2, 1, 1], width=8, seed=3)
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Two convs of one shape still start from different kernels.
    one = first.get_layer("conv3_block1_2_conv").kernel.numpy()
    two = first.get_layer("conv3_block2_2_conv").kernel.numpy()
    assert one.shape == two.shape and not np.allclose(one, two)
