import pytest

from ema_keras.data import write_demo_dataset
from ema_keras.training import get_recipe
from tests.tiny_recipe import TINY_TRAINING


@pytest.fixture(scope="session")
def small_demo_voc(tmp_path_factory):
    """A small copy of the demo dataset (VOC format), written once per session."""
    root = tmp_path_factory.mktemp("demo_voc")
    return write_demo_dataset(str(root), num_train=16, num_val=4, image_size=(64, 80), seed=3)


@pytest.fixture
def tiny_config(small_demo_voc):
    """The demo recipe shrunk to a few steps on the small dataset."""

    def make(**overrides):
        settings = dict(TINY_TRAINING, data_dir=small_demo_voc, validate=False)
        settings.update(overrides)
        return get_recipe("demo", **settings)

    return make
