"""Training settings, and named recipes derived from the official one.

`TrainConfig()` is the official PASCAL VOC recipe of the paper (see
EMANET.md); other recipes override a few values of it, among them one per
benchmark of the paper (`cityscapes`, `pascal_context`, `coco_stuff10k`, ...)
with the settings of its published anchor (docs/datasets.md).
"""

import dataclasses
import math
from typing import Optional, Tuple

from ema_keras.data.class_weights import CLASS_WEIGHT_MODES, is_class_weights_setting
from ema_keras.data.datasets import DATASETS
from ema_keras.data.pipeline import OFFICIAL_SCALES
from ema_keras.data.training_data import dataset_names, is_custom
from ema_keras.losses import AUX_LOSS_WEIGHT, DISTILL_TEMPERATURE, DISTILL_WEIGHT
from ema_keras.models.preset_files import is_preset_location
from ema_keras.models.presets import preset_names
from ema_keras.optimizers import (
    OFFICIAL_BIAS_LEARNING_RATE_MULTIPLIER,
    OFFICIAL_L2_WEIGHT_DECAY,
    OFFICIAL_LEARNING_RATE,
    OFFICIAL_MOMENTUM,
)
from ema_keras.schedules import OFFICIAL_POLY_POWER
from ema_keras.training import backends
from ema_keras.training.errors import SettingsError

# Keras dtype policies --mixed_precision trains in (inference precisions are
# ema_keras.inference.precision.INFERENCE_PRECISIONS).
TRAINING_PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def _setting(default, help_text):
    """A field with its one-sentence help (the flag's help in recipes/train_voc.py)."""
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # Model.
    preset: str = _setting(
        "emanet_resnet101_os8_voc",
        "EMANet architecture to train: a preset name (ema_keras.models.PRESETS), or a preset "
        "folder, hf://org/name or kaggle://... preset to fine-tune (its weights loaded).",
    )
    num_classes: Optional[int] = _setting(
        None,
        "Classes the head predicts, background included; unset: the dataset's (VOC 21; a folder "
        "dataset's classes.txt). A VOC-format folder of one's own may set another count.",
    )
    aux_loss_weight: float = _setting(
        AUX_LOSS_WEIGHT, "Weight of the auxiliary head's loss, for presets that have that head."
    )
    ohem: bool = _setting(
        False, "Train on the hardest pixels only (online hard example mining) instead of all."
    )
    class_weights: str = _setting(
        "none",
        "Weights of the classes in the cross-entropy: none, inverse_frequency or "
        "inverse_sqrt_frequency (of the training labels' pixel counts), or a file of one "
        "weight per class (one a line, or a JSON list).",
    )
    backbone_weights: Optional[str] = _setting(
        None,
        "ImageNet backbone weights to start from (keras.applications .h5 or converted .keras).",
    )
    weights: Optional[str] = _setting(
        None,
        "A whole EMANet's weights to start from (.keras, .weights.h5 or converted checkpoint).",
    )
    freeze_backbone: bool = _setting(
        False,
        "Train only the head and classifier: the image encoder keeps the weights it starts from "
        "(set --weights or --backbone_weights), its BatchNorms their moving statistics.",
    )
    teacher: Optional[str] = _setting(
        None,
        "A trained model of the same classes to distil into this one (channel-wise, on the "
        "logits): a .keras file, or a preset folder, hf://, kaggle:// or preset name with weights.",
    )
    distill_temperature: float = _setting(
        DISTILL_TEMPERATURE,
        "Temperature of the spatial softmax of each class's logits in the --teacher's term.",
    )
    distill_weight: float = _setting(
        DISTILL_WEIGHT, "Weight of the --teacher's distillation term in the loss (0: none)."
    )
    qat_steps: int = _setting(
        0,
        "Quantization-aware fine-tuning steps after training (0: none): a copy with its "
        "BatchNorms folded and int8 fake-quantization is fine-tuned on the training data, "
        "scored on the validation set and written as qat.keras, which export_model.py "
        "--qat_model turns into a full-integer TFLite file (docs/mobile.md).",
    )
    qat_learning_rate: float = _setting(
        1e-4, "Constant SGD learning rate (momentum 0.9) of the --qat_steps fine-tune."
    )
    # Data. `data_dir` is a folder of `dataset` (VOCdevkit or VOC2012 for voc);
    # None trains on the generated demo dataset. `train_tfrecords` (a glob)
    # replaces the folder.
    dataset: str = _setting(
        "voc",
        "Layout and classes of --data_dir: voc, cityscapes, pascal_context (59 classes), "
        "pascal_context_60, coco_stuff164k, coco_stuff10k; or your own data: folder (images/, "
        "masks/, classes.txt), cvat, labelme or coco (docs/data.md).",
    )
    data_dir: Optional[str] = _setting(
        None,
        "VOCdevkit or VOC2012 folder; unset: $EMA_KERAS_DATA_DIR, ./data/VOCdevkit, then the "
        "TFDS manual folder (the demo recipe generates its own data).",
    )
    sbd_dir: Optional[str] = _setting(
        None, "SBD benchmark_RELEASE folder, the extra labels --train_split trainaug needs."
    )
    aug_dir: Optional[str] = _setting(
        None, "SegmentationClassAug folder, an alternative to --sbd_dir for trainaug."
    )
    train_split: str = _setting(
        "trainaug", "Split to train on: trainaug (VOC train + SBD, 10,582 images) or a VOC split."
    )
    val_split: str = _setting("val", "Split to validate on after every checkpoint.")
    val_fraction: float = _setting(
        0.1,
        "Your own data without split files: the share of images drawn (with --seed) for "
        "validation, recorded in model_dir/splits.json and reused on resume.",
    )
    train_tfrecords: Optional[str] = _setting(
        None, "Glob of TFRecord shards to train from instead of the folder's split."
    )
    crop_size: int = _setting(513, "Side in pixels of the square training crops.")
    scales: Tuple[float, ...] = _setting(
        OFFICIAL_SCALES, "Random rescale factors applied before cropping, e.g. 0.5,0.75,1.0."
    )
    flip: bool = _setting(True, "Flip training images horizontally at random.")
    cache_dataset: bool = _setting(
        False, "Keep the decoded training images in memory after the first pass (small sets)."
    )
    # Optimisation (official: SGD 0.9, lr 0.009, poly 0.9, 30k steps, batch 16).
    global_batch_size: int = _setting(
        16,
        "Batch over all replicas; the learning rate is used as given (scale it yourself, "
        "linearly, when you change the batch).",
    )
    steps: int = _setting(30_000, "Training steps in all (a restart resumes towards it).")
    learning_rate: float = _setting(
        OFFICIAL_LEARNING_RATE,
        "Initial learning rate of SGD, decayed to 0 over --steps by the poly schedule.",
    )
    poly_power: float = _setting(
        OFFICIAL_POLY_POWER, "Power of the polynomial decay of the learning rate to 0."
    )
    warmup_steps: int = _setting(
        0, "Steps over which the learning rate rises linearly to the poly curve (0: none)."
    )
    momentum: float = _setting(
        OFFICIAL_MOMENTUM, "Momentum of SGD: the share of the previous update kept."
    )
    weight_decay: float = _setting(
        OFFICIAL_L2_WEIGHT_DECAY,
        "L2 weight decay on convolution kernels (biases and BatchNorm get none).",
    )
    bias_learning_rate_multiplier: float = _setting(
        OFFICIAL_BIAS_LEARNING_RATE_MULTIPLIER,
        "Biases learn this many times faster than kernels, as in the official code.",
    )
    # Execution.
    strategy: str = _setting(
        "mirrored",
        "Distribution: one_device, mirrored (all local GPUs; on JAX keras.distribution."
        "DataParallel over all local devices), multi_worker (TF_CONFIG, TensorFlow) or tpu "
        "(TensorFlow).",
    )
    tpu_address: Optional[str] = _setting(
        None, "TPU name or grpc:// address for --strategy tpu (unset: the TPU VM's own)."
    )
    mixed_precision: str = _setting(
        "float32", "Keras dtype policy: float32, mixed_float16 (GPUs) or mixed_bfloat16 (TPUs)."
    )
    jit_compile: bool = _setting(
        False, "Compile the train step with XLA (TensorFlow; always on with JAX; refused on torch)."
    )
    steps_per_checkpoint: int = _setting(
        1_000, "Steps between checkpoints and validations; must divide --steps."
    )
    log_every_steps: int = _setting(
        20, "Steps between TensorBoard scalars (loss, mIoU, learning rate) in model_dir/logs."
    )
    validate: bool = _setting(
        True, "Score --val_split after every checkpoint and keep the best model as best.keras."
    )
    eval_pad_size: int = _setting(
        513, "Validation images are padded to this square side (VOC's are at most 500x500)."
    )
    seed: int = _setting(
        0, "Seed of the weight initialisation and of the training data order and augmentation."
    )
    verbose: int = _setting(1, "Keras fit output: 0 silent, 1 progress bar, 2 one line per epoch.")


def check_settings(config, backend=backends.BACKEND):
    """Refuses, naming the flag, settings that do not exist, do not fit together or the
    data, or that Keras' `backend` cannot run (`backends.check_backend`).

    Cheap and file-free: programs call it before they read data or write anything.
    """
    for flag, value, known in (
        ("dataset", config.dataset, dataset_names()),
        # A preset folder or hf:// / kaggle:// preset: a trained model to fine-tune.
        (
            "preset",
            config.preset,
            [config.preset] if is_preset_location(config.preset) else preset_names(),
        ),
        ("strategy", config.strategy, backends.STRATEGIES["tensorflow"]),  # every one
        ("mixed_precision", config.mixed_precision, TRAINING_PRECISIONS),
    ):
        if value not in known:
            raise SettingsError(
                f"--{flag} {value!r} is unknown; use one of: {', '.join(sorted(known))}."
            )
    if not is_class_weights_setting(config.class_weights):
        raise SettingsError(
            f"--class_weights {config.class_weights!r} is neither one of "
            f"{', '.join(CLASS_WEIGHT_MODES)} nor an existing file of weights."
        )
    if not (math.isfinite(config.distill_temperature) and config.distill_temperature > 0.0):
        raise SettingsError(
            f"--distill_temperature must be above 0, got {config.distill_temperature}."
        )
    if not (math.isfinite(config.distill_weight) and config.distill_weight >= 0.0):
        raise SettingsError(f"--distill_weight must be 0 or more, got {config.distill_weight}.")
    if config.qat_steps < 0:
        raise SettingsError(f"--qat_steps must be 0 or more, got {config.qat_steps}.")
    if not (math.isfinite(config.qat_learning_rate) and config.qat_learning_rate > 0.0):
        raise SettingsError(
            f"--qat_learning_rate must be above 0, got {config.qat_learning_rate}."
        )
    if not 0.0 < config.val_fraction < 1.0:
        raise SettingsError(f"--val_fraction must be between 0 and 1, got {config.val_fraction}.")
    if is_custom(config.dataset):
        if config.data_dir is None and not config.train_tfrecords:
            raise SettingsError(f"--dataset {config.dataset} needs --data_dir, your data's folder.")
    else:
        _check_dataset(config, DATASETS[config.dataset])
    return backends.check_backend(config, backend)


def _check_dataset(config, dataset):
    """Settings that only fit VOC, or a class count other than the dataset's label map gives."""
    if config.dataset == "voc":
        return  # VOC-format folders of one's own may hold any number of classes
    if config.num_classes is not None and config.num_classes != dataset.num_classes:
        raise SettingsError(
            f"--num_classes {config.num_classes} does not fit --dataset {config.dataset} "
            f"({dataset.num_classes} classes); use --recipe {config.dataset} or "
            f"--num_classes {dataset.num_classes}."
        )
    if config.train_split == "trainaug":
        raise SettingsError(
            f"--train_split trainaug is VOC's; --dataset {config.dataset} has the splits "
            f"{', '.join(dataset.splits)} (use --recipe {config.dataset})."
        )


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
# Phones (issue 14): MobileEMANet, settings of the mobile anchors (TF DeepLab's
# MobileNet VOC training: crop 513, batch 16, poly, weight decay 4e-5);
# ImageNet trunk by --backbone_weights (a keras.applications MobileNetV3 .h5).
RECIPES["voc_mobile"] = dataclasses.replace(
    RECIPES["voc_official"],
    preset="emanet_mobilenetv3_large_voc",
    learning_rate=0.01,
    weight_decay=4e-5,
)
# The demo recipe on the small mobile preset, trained from scratch. MobileNetV3
# from scratch learns slower than the tiny ResNet: by eval_voc.py 300 steps gave
# 78.2 (output stride 16) and 74.2 (32), 600 steps 81.2, 900 steps 84.6 with
# int8 agreement 99.54% (99.37% after 600: wider logit margins, fewer int8
# ties); docs/mobile.md.
RECIPES["demo_mobile"] = dataclasses.replace(
    RECIPES["demo"],
    preset="emanet_mobilenetv3_small_voc",
    steps=900,
    steps_per_checkpoint=100,
)
# The paper's other benchmarks (issue 15; docs/datasets.md has the anchors).
# Cityscapes: mmsegmentation's EMANet R-101-D8 769x769 80k schedule (79.62 val
# single scale; batch 8, SGD lr 0.01, weight decay 5e-4), with OHEM as the
# authors' 81.14; validation pads the 1024x2048 images to 2048.
RECIPES["cityscapes"] = dataclasses.replace(
    RECIPES["voc_official"],
    dataset="cityscapes",
    num_classes=19,
    train_split="train",
    crop_size=769,
    global_batch_size=8,
    steps=80_000,
    learning_rate=0.01,
    weight_decay=5e-4,
    ohem=True,
    eval_pad_size=2048,
)
# PASCAL Context: mmsegmentation's 59-class schedule (crop 480, batch 16, 80k
# steps, lr 0.004, weight decay 1e-4); the paper's 53.1 is on 59 classes.
RECIPES["pascal_context"] = dataclasses.replace(
    RECIPES["voc_official"],
    dataset="pascal_context",
    num_classes=59,
    train_split="train",
    crop_size=480,
    steps=80_000,
    learning_rate=0.004,
)
RECIPES["pascal_context_60"] = dataclasses.replace(
    RECIPES["pascal_context"], dataset="pascal_context_60", num_classes=60
)
# COCO-Stuff-10k, the paper's 39.9: the official repository's settings (its
# issue 19: crop 513, 30k steps, lr 9e-3, batch 16), tested on the 1,000 test
# images; COCO images are at most 640 pixels a side.
RECIPES["coco_stuff10k"] = dataclasses.replace(
    RECIPES["voc_official"],
    dataset="coco_stuff10k",
    num_classes=171,
    train_split="train",
    val_split="test",
    eval_pad_size=640,
)
# COCO-Stuff-164k: the same settings over mmsegmentation's 80k steps (the
# paper has no 164k figure).
RECIPES["coco_stuff164k"] = dataclasses.replace(
    RECIPES["coco_stuff10k"],
    dataset="coco_stuff164k",
    train_split="train2017",
    val_split="val2017",
    steps=80_000,
)
# Recipes that train on the generated demo set when no --data_dir is given.
DEMO_RECIPES = ("demo", "demo_mobile")


def get_recipe(name, **overrides):
    """The named recipe with `overrides` applied (None values are ignored)."""
    if name not in RECIPES:
        raise SettingsError(f"--recipe {name!r} is unknown; available: {sorted(RECIPES)}.")
    overrides = {key: value for key, value in overrides.items() if value is not None}
    unknown = set(overrides) - {field.name for field in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"Unknown training settings: {sorted(unknown)}.")
    return dataclasses.replace(RECIPES[name], **overrides)
