"""A small EMANet trained on the demo dataset, shared by the export tests.

A randomly initialised network's argmax sits on near-ties that int8 rounding
flips at will; 150 steps on the demo shapes separate the classes enough for
the int8 agreement threshold (99%) to mean something.
"""

import keras
import pytest

from ema_keras.data import read_voc_split, train_dataset, write_demo_dataset
from ema_keras.export import load_images
from ema_keras.losses import MaskedSparseCrossEntropy
from ema_keras.models import EMANetImageSegmenter

TRAIN_STEPS = 150
CROP = 48


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    return write_demo_dataset(
        tmp_path_factory.mktemp("export_demo"), num_train=32, num_val=8, image_size=(48, 72), seed=3
    )


@pytest.fixture(scope="session")
def trained_model_path(demo_root, tmp_path_factory):
    keras.utils.set_random_seed(0)
    dataset = train_dataset(
        read_voc_split(demo_root, "train"),
        batch_size=8,
        crop_size=CROP,
        scales=(1.0,),
        seed=0,
        cache=True, num_classes=21,
    )
    model = EMANetImageSegmenter.from_preset("emanet_tiny_demo", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=MaskedSparseCrossEntropy())
    model.fit(dataset, steps_per_epoch=TRAIN_STEPS, epochs=1, shuffle=False, verbose=0)
    path = tmp_path_factory.mktemp("export_model") / "trained.keras"
    model.save(path)
    return str(path)


@pytest.fixture
def trained_model(trained_model_path):
    from ema_keras.export import load_model

    return load_model(trained_model_path)


@pytest.fixture(scope="session")
def val_images(demo_root):
    return load_images(data_dir=demo_root, split="val", limit=6)


@pytest.fixture(scope="session")
def calibration_images(demo_root):
    return load_images(data_dir=demo_root, split="train", limit=16)
