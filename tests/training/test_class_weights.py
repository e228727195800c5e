"""Class weights in the cross-entropy: the losses, the weights from counts or a file, the flag.

References: a float64 NumPy computation and PyTorch's
`cross_entropy(weight=w, ignore_index=255)`; the JAX and torch backends run
`tests/backends/loss_checks.py` as programs and must give TensorFlow's values.
"""

import json
import os

import keras
import numpy as np
import pytest

from ema_keras.data.class_weights import (
    class_weights_from_counts,
    read_class_weights_file,
    resolve_class_weights,
)
from ema_keras.data.errors import DataError
from ema_keras.losses import MaskedSparseCrossEntropy, OHEMCrossEntropy
from ema_keras.training.config import SettingsError, TrainConfig, check_settings
from tests.backends.backend_testing import backend_environment, run_checks_program
from tests.backends.loss_checks import weighted_loss_case, weighted_loss_values
from tests.tf_log_level import TESTS_TF_LOG_LEVEL


def _random_batch(seed, classes=5, ignore_fraction=0.3):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(3, 6, 7, classes)) * 2).astype("float32")
    labels = rng.integers(0, classes, size=(3, 6, 7)).astype("int32")
    labels[rng.random(labels.shape) < ignore_fraction] = 255
    weights = list(rng.uniform(0.1, 3.0, size=classes))
    return logits, labels, weights


def _pixel_losses(logits, labels):
    """Float64 cross-entropy of each pixel (0 where ignored) and the valid mask."""
    valid = labels != 255
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    safe = np.where(valid, labels, 0)
    return -np.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0], valid


def _weighted_mean(losses, labels, selected, weights):
    pixel_weights = np.asarray(weights, np.float64)[np.where(selected, labels, 0)] * selected
    return (pixel_weights * losses).sum() / pixel_weights.sum()


def _ohem_selection(logits, labels, threshold, min_kept):
    losses, valid = _pixel_losses(logits, labels)
    true_probability = np.exp(-losses)
    ranked = np.sort(true_probability[valid])
    cutoff = max(ranked[min(min_kept, valid.sum()) - 1], threshold)
    return valid & (true_probability <= cutoff)


def _torch_cross_entropy(logits, labels, weights):
    torch = pytest.importorskip("torch")
    value = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits.astype(np.float64)).permute(0, 3, 1, 2),
        torch.from_numpy(labels.astype(np.int64)),
        weight=torch.tensor(weights, dtype=torch.float64),
        ignore_index=255,
    )
    return float(value)


@pytest.mark.parametrize("seed", [0, 1])
def test_weighted_loss_equals_numpy_and_torch(seed):
    logits, labels, weights = _random_batch(seed)
    losses, valid = _pixel_losses(logits, labels)
    expected = _weighted_mean(losses, labels, valid, weights)
    value = float(MaskedSparseCrossEntropy(class_weights=weights)(labels, logits))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    np.testing.assert_allclose(value, _torch_cross_entropy(logits, labels, weights), rtol=1e-5)
    # Not the unweighted mean: the weights matter.
    assert abs(value - losses[valid].mean()) > 1e-3


def test_weighted_ohem_weights_the_kept_pixels():
    logits, labels, weights = _random_batch(4)
    threshold, min_kept = 0.7, 40
    kept = _ohem_selection(logits, labels, threshold, min_kept)
    losses, _ = _pixel_losses(logits, labels)
    expected = _weighted_mean(losses, labels, kept, weights)
    loss = OHEMCrossEntropy(threshold=threshold, min_kept=min_kept, class_weights=weights)
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5)
    # PyTorch on the kept pixels alone (the others relabelled ignore) gives the same.
    kept_labels = np.where(kept, labels, 255)
    np.testing.assert_allclose(
        float(loss(labels, logits)), _torch_cross_entropy(logits, kept_labels, weights),
        rtol=1e-5,
    )


def test_unit_weights_give_todays_loss():
    logits, labels, _ = _random_batch(2)
    ones = [1.0] * logits.shape[-1]
    np.testing.assert_allclose(
        float(MaskedSparseCrossEntropy(class_weights=ones)(labels, logits)),
        float(MaskedSparseCrossEntropy()(labels, logits)),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        float(OHEMCrossEntropy(min_kept=30, class_weights=ones)(labels, logits)),
        float(OHEMCrossEntropy(min_kept=30)(labels, logits)),
        rtol=1e-6,
    )


def test_small_weight_totals_are_not_clipped_to_one():
    # One valid pixel of weight 0.25: the mean is that pixel's loss, not a quarter of it.
    logits, labels, _ = _random_batch(3)
    labels[:] = 255
    labels[0, 0, 0] = 2
    losses, _ = _pixel_losses(logits, labels)
    weights = [1.0, 1.0, 0.25, 1.0, 1.0]
    value = float(MaskedSparseCrossEntropy(class_weights=weights)(labels, logits))
    np.testing.assert_allclose(value, losses[0, 0, 0], rtol=1e-5)


def test_all_ignored_gives_zero_with_weights():
    logits, labels, weights = _random_batch(5)
    labels[:] = 255
    assert float(MaskedSparseCrossEntropy(class_weights=weights)(labels, logits)) == 0.0


def test_weighted_losses_round_trip_their_config():
    for loss in (MaskedSparseCrossEntropy(class_weights=[0.5, 2]),
                 OHEMCrossEntropy(class_weights=[0.5, 2])):
        config = loss.get_config()
        assert config["class_weights"] == [0.5, 2.0]
        json.dumps(config)
        assert type(loss).from_config(config).class_weights == (0.5, 2.0)
    assert MaskedSparseCrossEntropy().get_config()["class_weights"] is None
    # A config written before class weights existed still loads.
    old = MaskedSparseCrossEntropy().get_config()
    del old["class_weights"]
    assert MaskedSparseCrossEntropy.from_config(old).class_weights is None


@pytest.mark.parametrize("weights", [[], [1.0, -1.0], [0.0, 0.0], [1.0, float("nan")]])
def test_losses_refuse_bad_weights(weights):
    with pytest.raises(ValueError, match="class_weights"):
        MaskedSparseCrossEntropy(class_weights=weights)


def test_losses_refuse_a_weight_count_other_than_the_classes():
    logits, labels, _ = _random_batch(6)
    with pytest.raises(ValueError, match="3 class weights for logits of 5 classes"):
        MaskedSparseCrossEntropy(class_weights=[1, 2, 3])(labels, logits)


def test_weights_from_counts_by_hand():
    counts = [600, 300, 100, 0]
    # inverse frequency: 1000 / (3 * count); the absent class gets the largest, 10/3.
    np.testing.assert_allclose(
        class_weights_from_counts(counts, "inverse_frequency"),
        [1000 / 1800, 1000 / 900, 1000 / 300, 1000 / 300],
    )
    # inverse sqrt: 1000 / (sum_k sqrt(count_k) * sqrt(count_c)).
    root_sum = np.sqrt(600) + np.sqrt(300) + np.sqrt(100)
    expected = [1000 / (root_sum * np.sqrt(c)) for c in (600, 300, 100)]
    np.testing.assert_allclose(
        class_weights_from_counts(counts, "inverse_sqrt_frequency"), expected + [expected[2]]
    )
    # Both are normalised: the pixel-weighted mean weight is 1.
    for mode in ("inverse_frequency", "inverse_sqrt_frequency"):
        weights = class_weights_from_counts(counts, mode)
        np.testing.assert_allclose(np.dot(counts, weights) / sum(counts), 1.0)
    np.testing.assert_allclose(class_weights_from_counts([5, 5], "inverse_frequency"), [1, 1])


def test_weights_from_counts_refusals():
    with pytest.raises(ValueError, match="no class has a pixel"):
        class_weights_from_counts([0, 0], "inverse_frequency")
    with pytest.raises(ValueError, match="mode"):
        class_weights_from_counts([1, 2], "median_frequency")


@pytest.mark.parametrize(
    "text", ["0.5\n2\n\n# rare\n3.25\n", "[0.5, 2, 3.25]", "0.5  # background\n2\n3.25"]
)
def test_weights_file_lines_or_json(tmp_path, text):
    path = tmp_path / "weights.txt"
    path.write_text(text)
    assert read_class_weights_file(str(path), 3) == [0.5, 2.0, 3.25]
    assert resolve_class_weights(str(path), None, 3) == [0.5, 2.0, 3.25]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1\n2\n", "lists 2 class weight\\(s\\); the model has 3 classes"),
        ("1\n-2\n3\n", "weight 2 must be a finite number >= 0"),
        ("1\nnan\n3\n", "weight 2 must be a finite number >= 0"),
        ("1\nheavy\n3\n", "weight 2 is not a number: 'heavy'"),
        ("[1, 2, NaN]", "weight 3 must be a finite number >= 0"),
        ("[1, true, 3]", "weight 2 is not a number"),
        ("[1, 2", "is not a JSON list"),
        ("0\n0\n0\n", "every class weight is 0"),
    ],
)
def test_weights_file_refusals_name_the_file(tmp_path, text, message):
    path = tmp_path / "weights.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as raised:
        read_class_weights_file(str(path), 3)
    assert raised.value.path == str(path)
    assert str(raised.value).startswith(str(path)) and "\n" not in str(raised.value)


def test_resolve_class_weights():
    assert resolve_class_weights("none", [1, 2], 2) is None
    np.testing.assert_allclose(resolve_class_weights("inverse_frequency", [3, 1], 2), [2 / 3, 2])
    with pytest.raises(ValueError, match="needs 3 pixel counts, got 2"):
        resolve_class_weights("inverse_frequency", [3, 1], 3)
    with pytest.raises(DataError, match="cannot read"):
        resolve_class_weights("/no/such/weights.txt", None, 3)


def test_check_settings_refuses_an_unknown_class_weights(tmp_path):
    with pytest.raises(SettingsError, match="--class_weights 'inverse'"):
        check_settings(TrainConfig(class_weights="inverse"))
    path = tmp_path / "weights.txt"
    path.write_text("1\n" * 21)
    for setting in ("none", "inverse_frequency", "inverse_sqrt_frequency", str(path)):
        check_settings(TrainConfig(class_weights=setting))


def test_compile_model_passes_the_weights_to_every_loss():
    from ema_keras.training.trainer import compile_model

    inputs = keras.Input((8, 8, 3))
    outputs = {
        "logits": keras.layers.Conv2D(3, 1, name="logits")(inputs),
        "aux_logits": keras.layers.Conv2D(3, 1, name="aux_logits")(inputs),
    }
    model = keras.Model(inputs, outputs)
    for ohem in (False, True):
        config = TrainConfig(num_classes=3, ohem=ohem, steps=10)
        compile_model(model, config, class_weights=[1.0, 2.0, 0.5])
        assert {name: loss.class_weights for name, loss in model.loss.items()} == {
            "logits": (1.0, 2.0, 0.5), "aux_logits": (1.0, 2.0, 0.5)
        }
        assert all(isinstance(loss, OHEMCrossEntropy) == ohem for loss in model.loss.values())


def test_loss_checks_case_gives_the_numpy_values():
    logits, labels, weights = weighted_loss_case()
    losses, valid = _pixel_losses(logits, labels)
    values = weighted_loss_values()
    np.testing.assert_allclose(
        values["plain"], _weighted_mean(losses, labels, valid, weights), rtol=1e-5
    )
    kept = _ohem_selection(logits, labels, 0.6, 50)
    np.testing.assert_allclose(
        values["ohem"], _weighted_mean(losses, labels, kept, weights), rtol=1e-5
    )


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_weighted_losses_equal_tensorflows_on(backend, tmp_path):
    pytest.importorskip(backend)
    env = backend_environment(backend, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL=TESTS_TF_LOG_LEVEL)
    report = run_checks_program("tests.backends.loss_checks", str(tmp_path), env, timeout=300)
    assert f"class-weighted losses on {backend}" in report
    with open(os.path.join(tmp_path, f"weighted_losses_{backend}.json")) as handle:
        values = json.load(handle)
    expected = weighted_loss_values()
    assert values.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(values[name], value, rtol=1e-5, err_msg=name)
