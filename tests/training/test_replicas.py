"""What training guarantees across replicas, checked on the real recipe.

Every model variable (kernels, biases, BatchNorm statistics, EMA bases) and
every optimizer variable holds the same bits on every replica, and mirrored
training follows the single-device trajectory of the same global batch.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ema_keras.imagenet import IMAGENET_MEAN, IMAGENET_STD
from ema_keras.models import EMANetImageSegmenter
from ema_keras.training import get_recipe, train, trainer
from ema_keras.training.strategy import make_strategy
from tests.replica_testing import assert_identical_on_every_replica


@pytest.mark.parametrize("mixed_precision", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_every_variable_is_identical_on_every_replica(tiny_config, tmp_path, mixed_precision):
    config = tiny_config(strategy="mirrored", steps=3, steps_per_checkpoint=3,
                         mixed_precision=mixed_precision)
    result = train(config, str(tmp_path / "run"))
    assert result.step == 3
    model = result.model
    assert model.optimizer.variables and model.non_trainable_variables
    assert_identical_on_every_replica(model.variables + model.optimizer.variables, num_replicas=2)


def _fit_without_dropout(strategy_name, images, labels, steps):
    strategy = make_strategy(strategy_name)
    with strategy.scope():
        keras.utils.set_random_seed(7)
        model = EMANetImageSegmenter.from_preset(
            "emanet_tiny_demo", num_classes=5, dropout=0.0, seed=7
        )
        trainer.compile_model(model, get_recipe("demo", num_classes=5, steps=10))
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(len(images)).repeat()
    model.fit(data, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return model


def test_mirrored_follows_one_device_on_the_same_global_batch():
    """Equal when per-replica loss averaging cannot matter.

    The loss of a replica is the mean over its valid pixels, and the replicas'
    gradients are averaged. That equals the mean over the global batch when
    every replica holds as many valid pixels: here no pixel is ignored (255)
    and the replicas get equal halves. BatchNorm (synchronised) and the EMA
    bases see the global batch either way. What remains is float32 summation
    order: 1e-4 relative after three steps.
    """
    rng = np.random.default_rng(3)
    # Raw pixels (what the models take) that normalise to a standard normal.
    images = (rng.normal(size=(4, 48, 48, 3)) * IMAGENET_STD + IMAGENET_MEAN).astype("float32")
    labels = rng.integers(0, 5, size=(4, 48, 48)).astype("int32")
    one_device = _fit_without_dropout("one_device", images, labels, steps=3)
    mirrored = _fit_without_dropout("mirrored", images, labels, steps=3)
    assert_identical_on_every_replica(mirrored.variables, num_replicas=2)
    for expected, actual in zip(one_device.variables, mirrored.variables):
        assert expected.path == actual.path
        scale = float(np.max(np.abs(expected.numpy()))) or 1.0
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-4,
                                   atol=1e-5 * scale, err_msg=expected.path)


def test_logged_validation_miou_is_the_saved_models(tiny_config, tmp_path):
    """The mIoU `fit` logs under mirrored (half the images on each replica) is last.keras's.

    Scored again on one device by `evaluate` with the same protocol
    (`pad_to=eval_pad_size`, what `eval_voc.py --pad_to` runs); at each
    image's own size (the paper's protocol, eval_voc.py's default) the model
    also sees no padding, so that score differs a little.
    """
    from ema_keras.data import voc
    from ema_keras.inference.evaluation import evaluate
    from ema_keras.model_files import load_keras_model

    config = tiny_config(strategy="mirrored", steps=2, steps_per_checkpoint=2, validate=True)
    model_dir = tmp_path / "run"
    result = train(config, str(model_dir))
    examples = voc.read_voc_split(voc.find_voc_root(config.data_dir), config.val_split)
    assert len(examples) == 4
    rescored = evaluate(load_keras_model(str(model_dir / "last.keras")), examples,
                        num_classes=voc.NUM_CLASSES, pad_to=config.eval_pad_size)
    np.testing.assert_allclose(rescored.mean_iou, result.val_mean_iou, rtol=1e-5)
