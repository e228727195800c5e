"""The models' common base: keywords checked, config from the arguments, clone_model, old files."""

import json
import os
import warnings
import zipfile

import keras
import numpy as np
import pytest

from ema_keras.models import DilatedResNet, EMANet, EMANetBackbone, EMANetImageSegmenter
from ema_keras.models.functional_model import FunctionalModel

TINY = dict(block_counts=[1, 1, 1, 1], width=8)


def images(batch=2, height=32, width=32, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype("float32")


def tiny_emanet(**kwargs):
    return EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=3, **kwargs)


def legacy_tiny_emanet(**kwargs):
    """0.1's `EMANet`, as 0.1's `EMANet.from_preset("emanet_tiny_demo", num_classes=3)` built it."""
    encoder_args = {key: kwargs.pop(key) for key in ("include_preprocessing",) if key in kwargs}
    backbone = DilatedResNet(stem="deep", seed=kwargs.get("seed"), **TINY, **encoder_args)
    with pytest.warns(DeprecationWarning, match="0.1's layout"):
        return EMANet(
            backbone=backbone, num_classes=3, head_channels=32, classifier_channels=32,
            ema_num_bases=8, **kwargs,
        )  # fmt: skip


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_clases=3),
            "EMANetImageSegmenter.from_preset got an unexpected keyword argument 'num_clases' "
            "(did you mean 'num_classes'?). Accepted: align_corners, aux_channels, aux_head, "
            "backbone,",
        ),
        (
            lambda: EMANetImageSegmenter.from_preset("emanet_tiny_demo", output_strid=16),
            "unexpected keyword argument 'output_strid' (did you mean 'output_stride'?)",
        ),
        (
            lambda: EMANetImageSegmenter.from_preset("emanet_tiny_demo", weights="imagenet"),
            "unexpected keyword argument 'weights': use load_weights=True",
        ),
        (
            lambda: DilatedResNet(output_strid=16, **TINY),
            "DilatedResNet got an unexpected keyword argument 'output_strid' (did you mean "
            "'output_stride'?). Accepted: batch_norm_epsilon, batch_norm_momentum, "
            "batch_norm_synchronized, block_counts, depth, dtype, image_shape, "
            "include_preprocessing, multi_grid, name, output_stride, seed, stem, trainable, "
            "use_conv_bias, width.",
        ),
        (
            lambda: EMANetImageSegmenter(
                backbone=EMANetBackbone(image_encoder=DilatedResNet(**TINY)), num_clases=3
            ),
            "EMANetImageSegmenter got an unexpected keyword argument 'num_clases' (did you mean "
            "'num_classes'?)",
        ),
        (
            lambda: EMANetBackbone(image_encoder=DilatedResNet(**TINY), head_chanels=8),
            "EMANetBackbone got an unexpected keyword argument 'head_chanels' (did you mean "
            "'head_channels'?)",
        ),
        (
            lambda: EMANetImageSegmenter.from_preset(
                "emanet_tiny_demo", image_encoder={"depht": 50}
            ),
            "DilatedResNet (image_encoder=...) got an unexpected keyword argument 'depht' (did you "
            "mean 'depth'?)",
        ),
        (
            lambda: EMANetImageSegmenter.from_preset("emanet_tiny_demo", backbone={"depht": 50}),
            "EMANetBackbone (backbone=...) got an unexpected keyword argument 'depht'.",
        ),
    ],
)
def test_unknown_keywords_are_refused_by_name(build, message):
    with pytest.raises(TypeError) as error:
        build()
    assert message in str(error.value)


def test_unknown_preset_names_the_closest_and_lists_all():
    with pytest.raises(ValueError) as error:
        EMANetImageSegmenter.from_preset("emanet_tiny_dem")
    assert str(error.value).startswith(
        "Unknown EMANet preset 'emanet_tiny_dem' (did you mean 'emanet_tiny_demo'?); available: "
        "['emanet_mobilenetv3_large_voc',"
    )


def test_signature_lists_the_real_arguments_once():
    assert EMANetImageSegmenter.config_arguments()[:3] == ["backbone", "num_classes", "dropout"]
    assert EMANetBackbone.config_arguments()[:2] == ["image_encoder", "head_channels"]
    assert EMANet.config_arguments()[:3] == ["backbone", "num_classes", "head_channels"]
    assert "image_shape" in DilatedResNet.config_arguments()
    model = tiny_emanet(aux_head=True, seed=3)
    config = model.get_config()
    assert set(config) == {"name", "trainable"} | set(EMANetImageSegmenter.config_arguments())
    backbone = config["backbone"]["config"]
    assert set(backbone) == {"name", "trainable"} | set(EMANetBackbone.config_arguments())
    encoder = backbone["image_encoder"]["config"]
    assert encoder["image_shape"] == (None, None, 3) and "input_shape" not in encoder
    assert encoder["output_stride"] == 8 and backbone["head_channels"] == 32


def test_input_shape_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match=r"use image_shape="):
        backbone = DilatedResNet(input_shape=(40, 40, 3), **TINY)
    assert backbone.image_shape == (40, 40, 3)
    with pytest.warns(DeprecationWarning):
        model = EMANet(backbone=backbone, head_channels=16, input_shape=(40, 40, 3))
    assert tuple(model.output.shape) == (None, 40, 40, 21)
    with pytest.warns(DeprecationWarning, match="input_shape"):
        model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", input_shape=(24, 24, 3))
    assert model.image_encoder.image_shape == (24, 24, 3)
    assert tuple(model.output.shape) == (None, 24, 24, 21)
    with pytest.raises(TypeError, match="both 'image_shape' and its old name 'input_shape'"):
        DilatedResNet(input_shape=(8, 8, 3), image_shape=(8, 8, 3))
    # from_config (files saved before the rename) renames silently.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = {**backbone.get_config(), "input_shape": (24, 24, 3)}
        del config["image_shape"]
        assert DilatedResNet.from_config(config).image_shape == (24, 24, 3)


@pytest.mark.parametrize("aux_head", [False, True])
def test_clone_model_keeps_the_class_and_the_outputs(aux_head):
    model = tiny_emanet(aux_head=aux_head)  # unseeded: the clone draws new weights
    model.compile(optimizer="sgd", loss=None)
    clone = keras.models.clone_model(model)
    assert type(clone) is EMANetImageSegmenter and type(clone.backbone) is EMANetBackbone
    assert type(clone.image_encoder) is DilatedResNet
    assert clone.backbone is not model.backbone
    assert clone.backbone is clone.get_layer(model.backbone.name)
    assert clone.num_classes == 3 and clone.aux_head == aux_head
    assert clone.get_config() == model.get_config()
    assert clone.compiled
    batch = images()
    assert not np.allclose(
        keras.tree.flatten(clone(batch))[0].numpy(), keras.tree.flatten(model(batch))[0].numpy()
    )  # new weights, as clone_model promises
    clone.set_weights(model.get_weights())
    for expected, actual in zip(keras.tree.flatten(model(batch)), keras.tree.flatten(clone(batch))):
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())


def test_clone_model_of_a_backbone_and_with_shared_layers():
    backbone = DilatedResNet(output_stride=16, multi_grid=None, **TINY)
    clone = keras.models.clone_model(backbone)
    assert type(clone) is DilatedResNet and clone.get_config() == backbone.get_config()
    assert clone.dilations == backbone.dilations == [[1], [1], [1], [1]]
    assert sorted(clone.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    # clone_function=identity shares the layers: the clone is the same model.
    model = tiny_emanet()
    shared = keras.models.clone_model(model, clone_function=lambda layer: layer)
    assert type(shared) is EMANetImageSegmenter and shared.backbone is model.backbone
    np.testing.assert_array_equal(shared(images()).numpy(), model(images()).numpy())


def test_built_only_from_keywords():
    backbone = DilatedResNet(**TINY)
    with pytest.raises(TypeError, match="keyword arguments only"):
        DilatedResNet(backbone.inputs, backbone.outputs)


# What `EMANetImageSegmenter.from_preset("emanet_tiny_demo", num_classes=3, aux_head=True,
# seed=3).get_config()` returned before the common base (ema-keras at 48ffd66):
# hand-written configs, the input size under `input_shape`.
_FLOAT32 = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
            "registered_name": None}  # fmt: skip
OLD_CONFIG = {
    "name": "emanet", "trainable": True, "dtype": _FLOAT32,
    "backbone": {
        "module": "ema_keras.models.dilated_resnet", "class_name": "DilatedResNet",
        "config": {
            "name": "dilated_resnet", "trainable": True, "dtype": _FLOAT32, "depth": None,
            "block_counts": [1, 1, 1, 1], "stem": "deep", "output_stride": 8,
            "multi_grid": (1, 2, 4), "width": 8, "use_conv_bias": False,
            "batch_norm_momentum": 0.9, "batch_norm_epsilon": 1e-05,
            "batch_norm_synchronized": False, "input_shape": (None, None, 3), "seed": 3,
        },
        "registered_name": "ema_keras>DilatedResNet",
        "build_config": {"input_shape": None}, "compile_config": {},
    },
    "num_classes": 3, "head_channels": 32, "classifier_channels": 32, "ema_num_bases": 8,
    "ema_num_iterations": 3, "ema_momentum": 0.9, "ema_normalize_average": False,
    "aux_head": True, "concat_input": False, "dropout": 0.1, "align_corners": True,
    "batch_norm_momentum": 0.9, "batch_norm_epsilon": 1e-05, "batch_norm_synchronized": False,
    "input_shape": (None, None, 3), "seed": 3,
}  # fmt: skip


def test_files_saved_with_the_old_config_still_load(tmp_path):
    # The old code's model took normalised input: no include_preprocessing in
    # its config means False (tests/models/test_input_contract.py).
    model = legacy_tiny_emanet(aux_head=True, seed=3, include_preprocessing=False)
    batch = images(height=40, width=48)
    model(batch, training=True)  # moves BN statistics and the EMA bases off their init
    path = os.path.join(str(tmp_path), "new.keras")
    model.save(path)
    # The same file as the old code wrote it: its config.json holds the old config.
    old_path = os.path.join(str(tmp_path), "old.keras")
    with zipfile.ZipFile(path) as new, zipfile.ZipFile(old_path, "w") as old:
        for item in new.infolist():
            data = new.read(item.filename)
            if item.filename == "config.json":
                saved = json.loads(data)
                assert saved["config"]["image_shape"] == [None, None, 3]
                saved["config"] = OLD_CONFIG
                data = json.dumps(saved)
            old.writestr(item, data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        reloaded = keras.models.load_model(old_path, safe_mode=True)
    assert type(reloaded) is EMANet and type(reloaded.backbone) is DilatedResNet
    assert reloaded.get_config() == model.get_config()
    for key in ("logits", "aux_logits"):
        np.testing.assert_array_equal(reloaded(batch)[key].numpy(), model(batch)[key].numpy())
    # And the old config dict itself, through from_config.
    rebuilt = EMANet.from_config(OLD_CONFIG)
    assert rebuilt.get_config() == model.get_config()


def test_a_subclass_adds_its_own_arguments():
    class Widened(DilatedResNet):
        def __init__(self, *, extra=1, **kwargs):
            super().__init__(**kwargs)
            self.extra = extra

    model = Widened(extra=2, **TINY)
    assert issubclass(Widened, FunctionalModel)
    assert model.get_config()["extra"] == 2 and model.get_config()["width"] == 8
    with pytest.raises(TypeError, match="'extr' \\(did you mean 'extra'\\?\\)"):
        Widened(extr=2)
