"""Training settings, and named recipes derived from the official one.

`TrainConfig()` is the official PASCAL VOC recipe of the paper (see
EMANET.md); other recipes override a few values of it.
"""

import dataclasses
from typing import Optional, Tuple

from ema_keras.data.pipeline import OFFICIAL_SCALES


class SettingsError(ValueError):
    """Training settings that cannot work together or with the data; names the flag."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # Model.
    preset: str = "emanet_resnet101_os8_voc"
    num_classes: int = 21
    aux_loss_weight: float = 0.4  # used when the preset has an auxiliary head
    ohem: bool = False
    backbone_weights: Optional[str] = None
    weights: Optional[str] = None
    # Data. `data_dir` is a VOCdevkit (or VOC2012) folder; None trains on the
    # generated demo dataset. `train_tfrecords` (a glob) replaces the folder.
    data_dir: Optional[str] = None
    sbd_dir: Optional[str] = None
    aug_dir: Optional[str] = None
    train_split: str = "trainaug"
    val_split: str = "val"
    train_tfrecords: Optional[str] = None
    crop_size: int = 513
    scales: Tuple[float, ...] = OFFICIAL_SCALES
    flip: bool = True
    cache_dataset: bool = False
    # Optimisation (official: SGD 0.9, lr 0.009, poly 0.9, 30k steps, batch 16).
    global_batch_size: int = 16
    steps: int = 30_000
    learning_rate: float = 0.009
    poly_power: float = 0.9
    warmup_steps: int = 0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    bias_learning_rate_multiplier: float = 2.0
    # Execution.
    strategy: str = "mirrored"
    tpu_address: Optional[str] = None
    mixed_precision: str = "float32"
    jit_compile: bool = False
    steps_per_checkpoint: int = 1_000
    log_every_steps: int = 20  # TensorBoard scalars (loss, mIoU, learning rate)
    validate: bool = True
    eval_pad_size: int = 513  # VOC images are at most 500 x 500
    seed: int = 0
    verbose: int = 1


# Named recipes: the official one and what derives from it.
RECIPES = {
    "voc_official": TrainConfig(),
    "voc_official_os16": TrainConfig(preset="emanet_resnet101_os16_voc"),
    "voc_resnet50": TrainConfig(preset="emanet_resnet50_os8_voc"),
    # Minutes on a 2-core CPU: the tiny model on the generated demo set.
    "demo": TrainConfig(
        preset="emanet_tiny_demo",
        data_dir=None,
        train_split="train",
        crop_size=96,
        scales=(0.75, 1.0, 1.25),
        cache_dataset=True,
        global_batch_size=8,
        steps=300,
        learning_rate=0.05,
        warmup_steps=20,
        steps_per_checkpoint=50,
        eval_pad_size=128,
        verbose=2,
    ),
}


def get_recipe(name, **overrides):
    """The named recipe with `overrides` applied (None values are ignored)."""
    if name not in RECIPES:
        raise SettingsError(f"--recipe {name!r} is unknown; available: {sorted(RECIPES)}.")
    overrides = {key: value for key, value in overrides.items() if value is not None}
    unknown = set(overrides) - {field.name for field in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"Unknown training settings: {sorted(unknown)}.")
    return dataclasses.replace(RECIPES[name], **overrides)
