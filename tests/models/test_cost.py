import keras
import numpy as np
import pytest

from ema_keras import cost
from ema_keras.models import DilatedResNet, EMANet, EMANetBackbone, EMANetImageSegmenter


def test_conv_and_attention_formulas():
    # 3x3 conv, 4 -> 8 channels, bias, 5x6 output: 3*3*4*8 MACs per pixel.
    assert cost.conv_cost((3, 3, 4, 8), (1, 5, 6, 8), use_bias=True) == cost.Cost(
        3 * 3 * 4 * 8 + 8, 30 * 288
    )
    # EM: T iterations of two N*K*C products, plus the reconstruction.
    assert cost.em_attention_cost(16, 4, 3, 2, 5).macs == 7 * 10 * 4 * 16
    unit = cost.ema_unit_cost(16, 4, 3, 2, 5)
    assert unit.params == (16 * 16 + 16) + 16 * 16 + 2 * 16
    assert unit.macs == 2 * 10 * 16 * 16 + 7 * 10 * 4 * 16
    local = cost.non_local_cost(16, 2, 5)  # inner 8 channels
    assert local.params == 3 * (16 * 8 + 8) + 8 * 16 + 16 + 2 * 16
    assert local.macs == 3 * 10 * 16 * 8 + 2 * 10 * 10 * 8 + 10 * 8 * 16
    assert local.flops == 2 * local.macs


def test_tiny_model_parts_add_up_to_its_weights():
    backbone = DilatedResNet(block_counts=[1, 1, 1, 1], width=8)
    model = EMANetImageSegmenter(
        backbone=EMANetBackbone(
            image_encoder=backbone, head_channels=32, classifier_channels=16, ema_num_bases=8
        ),
        num_classes=5, aux_head=True, aux_channels=16,
    )  # fmt: skip
    parts = cost.model_cost(model, input_size=(64, 64))

    def pytorch_params(weights):
        # PyTorch counts neither BN moving statistics nor the bases (buffers).
        skipped = ("moving_mean", "moving_variance", "bases")
        return sum(int(np.prod(w.shape)) for w in weights if not w.path.endswith(skipped))

    assert parts["backbone"].params == pytorch_params(backbone.weights)
    assert parts["total"].params == pytorch_params(model.weights)
    unit = model.backbone.get_layer("ema_unit")
    assert parts["ema_unit"] == cost.ema_unit_cost(32, 8, 3, 8, 8)  # 64 px at stride 8
    assert parts["pre_ema"] == cost.Cost(3 * 3 * 256 * 32 + 2 * 32, 8 * 8 * 3 * 3 * 256 * 32)
    aux_conv = 3 * 3 * 128 * 16
    assert parts["aux_head"].macs == 8 * 8 * (aux_conv + 16 * 5)
    assert parts["head"].params > parts["ema_unit"].params + parts["pre_ema"].params
    assert unit.count_params() > parts["ema_unit"].params  # Keras also counts the bases
    # 0.1's layout (the head in the segmenter) is costed alike.
    with pytest.warns(DeprecationWarning):
        old = EMANet(
            backbone=backbone, num_classes=5, head_channels=32, classifier_channels=16,
            ema_num_bases=8, aux_head=True,
        )  # fmt: skip
    assert cost.model_cost(old, input_size=(64, 64)) == parts


def test_plain_resnet50_matches_torchvision_figures():
    # torchvision ResNet-50 at 224x224: 25,557,032 parameters and 4.09 GFLOPS
    # (MACs), its classifier (2,049,000 parameters, 2.05 M MACs) included.
    model = DilatedResNet(depth=50, stem="standard", output_stride=32, use_conv_bias=False)
    trunk = cost.model_cost(model, input_size=(224, 224))["backbone"]
    assert trunk.params == 25_557_032 - 2_049_000
    assert round((trunk.macs + 2048 * 1000) / 1e9, 2) == 4.09


def test_resnet101_emanet_at_513_against_the_paper():
    backbone = DilatedResNet(depth=101, stem="deep", output_stride=8, image_shape=(513, 513, 3))
    trunk = cost.model_cost(backbone)["backbone"]
    # torchvision's 42,500,160 plus the deep stem: +103,296 in the stem,
    # +64*64 + 64*256 in stage 1's first block.
    assert trunk.params == 42_500_160 + 103_296 + 64 * 64 + 64 * 256
    assert trunk.macs / 1e9 == pytest.approx(190.6, rel=0.005)  # the paper's "FLOPs"
    for width, paper_params, paper_gmacs in ((256, 4.87e6, 21.1), (512, 10.0e6, 43.1)):
        model = EMANetImageSegmenter(
            backbone=EMANetBackbone(image_encoder=backbone, head_channels=width)
        )
        parts = cost.model_cost(model)
        extra = parts["pre_ema"] + parts["ema_unit"]
        assert extra.params == pytest.approx(paper_params, rel=0.01)
        assert extra.macs / 1e9 == pytest.approx(paper_gmacs, rel=0.01)
        assert parts["backbone"] == trunk
    # The authors: the EMA unit costs about a third of one 3x3 conv of the head.
    unit = cost.ema_unit_cost(512, 64, 3, 65, 65).macs
    assert 0.25 < unit / (65 * 65 * 9 * 512 * 512) < 0.4
    assert cost.non_local_cost(512, 65, 65).macs > 3 * unit


def test_errors_name_the_problem():
    model = DilatedResNet(block_counts=[1, 1, 1, 1], width=8)
    with pytest.raises(ValueError, match="input_size"):
        cost.model_cost(model)
    inputs = keras.Input((8, 8, 3))
    custom = keras.Model(inputs, keras.layers.Embedding(4, 2, name="lookup")(inputs))
    with pytest.raises(ValueError, match="lookup"):
        cost.model_cost(custom)


def test_cost_table_rows_and_markdown():
    rows = cost.cost_table(50, output_stride=16, input_size=(129, 129), widths=(64,))
    assert [row["model"] for row in rows] == [
        "ResNet-50 trunk (deep stem, OS16)",
        "+ EMANet (64): 3x3 conv + EMA unit",
        "+ non-local (64): 3x3 conv + non-local block",
        "+ EMANet (64), whole head",
    ]
    assert all(row["paper_params"] is None for row in rows)  # the paper has OS8 only
    # 129 px at output stride 16: 9x9 feature maps.
    expected = cost.Cost(3 * 3 * 2048 * 64 + 2 * 64, 81 * 9 * 2048 * 64) + cost.ema_unit_cost(
        64, 64, 3, 9, 9
    )
    assert (rows[1]["params"], rows[1]["macs"]) == (expected.params, expected.macs)
    table = cost.format_table(rows).splitlines()
    assert len(table) == 2 + len(rows) and table[2].startswith("| ResNet-50 trunk")


def test_depthwise_convolution_rule():
    inputs = keras.Input((12, 12, 8))
    layer = keras.layers.DepthwiseConv2D(3, strides=1, padding="valid", depth_multiplier=2)
    keras.Model(inputs, layer(inputs))
    # 10x10 output, one 3x3 filter per (channel, multiplier), a bias per output channel.
    assert cost.layer_cost(layer) == cost.Cost(3 * 3 * 8 * 2 + 16, 10 * 10 * 3 * 3 * 8 * 2)


@pytest.mark.parametrize(
    "application, paper_mmacs",
    [
        # MobileNetV3 paper (Howard et al. 2019, Table 3): 219 M / 56 M MAdds at 224, of which
        # the classifier (pooled 1x1 conv to 1280 / 1024, then the 1000-way layer) is not in
        # keras.applications' include_top=False trunk.
        ("MobileNetV3Large", 219 - (960 * 1280 + 1280 * 1000) / 1e6),
        ("MobileNetV3Small", 56 - (576 * 1024 + 1024 * 1000) / 1e6),
    ],
)
def test_mobilenet_v3_trunks_match_the_paper(application, paper_mmacs):
    trunk = getattr(keras.applications, application)(
        input_shape=(224, 224, 3), include_top=False, weights=None, include_preprocessing=False
    )
    counted = cost.model_cost(trunk)["total"]
    assert abs(counted.macs / 1e6 - paper_mmacs) / paper_mmacs < 0.02
    statistics = sum(int(np.prod(w.shape)) for w in trunk.weights if "moving" in w.path)
    assert counted.params == trunk.count_params() - statistics


def test_mobile_presets_parts_add_up_and_meet_the_phone_budget():
    from ema_keras.models import build_preset

    model = build_preset("emanet_mobilenetv3_small_voc", image_shape=(129, 129, 3))
    parts = cost.model_cost(model, input_size=(513, 513))  # rebuilt at 513, backbone included
    skipped = ("moving_mean", "moving_variance", "bases")
    weights = sum(int(np.prod(w.shape)) for w in model.weights if not w.path.endswith(skipped))
    assert parts["total"].params == weights
    assert parts["backbone"].params == sum(
        int(np.prod(w.shape)) for w in model.image_encoder.weights if not w.path.endswith(skipped)
    )  # the paper's "backbone": the image encoder, the EMA head counted as "head"
    assert parts["total"].macs == parts["backbone"].macs + parts["head"].macs
    assert parts["ema_unit"].macs > 0
    large = build_preset("emanet_mobilenetv3_large_voc", image_shape=(513, 513, 3))
    assert cost.model_cost(large)["total"].macs <= 3e9  # issue 14's goal: <= 3 GMACs at 513
