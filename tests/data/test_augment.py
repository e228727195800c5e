"""Keras-layer extra augmentations keep the 255 ignore label and the alignment."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ema_keras.data import pipeline, voc
from ema_keras.data.augment import KerasAugmentation


def _batch():
    labels = np.zeros((2, 32, 32), np.int32)
    labels[:, 8:24, 8:24] = 15
    labels[:, 8, 8:24] = 255
    images = np.zeros((2, 32, 32, 3), np.float32) + 60.0
    images[labels == 15] = (200.0, 40.0, 70.0)
    images[labels == 255] = (250.0, 250.0, 250.0)
    return tf.constant(images), tf.constant(labels)


def _apply(augment, images, labels):
    """Runs an augmentation on the hook's dict format; returns (images, labels (B, H, W))."""
    data = augment({"images": images, "segmentation_masks": labels[..., None]})
    return data["images"], data["segmentation_masks"][..., 0]


def test_rotation_fills_labels_with_255_and_images_with_the_mean():
    images, labels = _batch()
    augment = KerasAugmentation(rotation_degrees=45, seed=1)
    out_images, out_labels = (t.numpy() for t in _apply(augment, images, labels))
    assert out_labels.dtype == np.int32 and out_images.shape == (2, 32, 32, 3)
    assert set(np.unique(out_labels).tolist()) <= {0, 15, 255}
    corners = out_labels[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    filled = corners == 255
    assert (
        filled.any()
    )  # a rotation of 45 degrees leaves corners uncovered -> ignored, not background
    corner_pixels = out_images[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    # The fill is the mean (0 after normalisation), not black; bilinear sampling
    # blends it with the image at the edge of the covered area.
    at_mean = np.abs(corner_pixels[filled] - np.asarray(pipeline.IMAGENET_MEAN)).max(axis=-1) < 1e-3
    assert at_mean.mean() >= 0.5 and corner_pixels[filled].min() > 55
    # Nearest sampling for masks: object pixels keep their colour under the rotated mask.
    inside = out_labels == 15
    assert inside.sum() > 100
    np.testing.assert_allclose(out_images[inside].mean(axis=0), (200, 40, 70), atol=20)


def test_zoom_out_keeps_255_and_colour_jitter_leaves_labels():
    images, labels = _batch()
    out_images, out_labels = _apply(KerasAugmentation(zoom=0.5, seed=0), images, labels)
    assert set(np.unique(out_labels.numpy()).tolist()) <= {0, 15, 255}
    jittered, same_labels = _apply(
        KerasAugmentation(brightness=0.3, contrast=0.3, saturation=0.4, hue=0.1, seed=0),
        images,
        labels,
    )
    np.testing.assert_array_equal(same_labels.numpy(), labels.numpy())
    assert not np.allclose(jittered.numpy(), images.numpy())
    assert jittered.numpy().min() >= 0 and jittered.numpy().max() <= 255


def test_argument_errors():
    with pytest.raises(ValueError, match="rotation_degrees"):
        KerasAugmentation(rotation_degrees=-1)
    with pytest.raises(ValueError, match="zoom"):
        KerasAugmentation(zoom=1.5)


def test_in_train_dataset_255_survives_and_seed_repeats(demo_root):
    examples = voc.read_voc_split(demo_root, "train")

    def batches():
        augment = KerasAugmentation(rotation_degrees=30, brightness=0.2, seed=4)
        dataset = pipeline.train_dataset(
            examples, batch_size=2, crop_size=32, seed=2, augmentation=augment, num_classes=21
        )
        return list(dataset.take(2).as_numpy_iterator())

    first, second = batches(), batches()
    for (images, labels), (images_again, labels_again) in zip(first, second):
        assert labels.dtype == np.int32 and images.dtype == np.float32
        assert set(np.unique(labels).tolist()) <= {0, 255, 1, 6, 8, 15, 16}
        np.testing.assert_array_equal(labels, labels_again)
        np.testing.assert_allclose(images, images_again)


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda: keras.layers.RandomFlip("horizontal", seed=3),
        lambda: keras.layers.RandomRotation(0.1, seed=3),
    ],
    ids=["RandomFlip", "RandomRotation"],
)
def test_a_keras_layer_plugs_into_the_hook_as_it_is(demo_root, make_layer):
    examples = voc.read_voc_split(demo_root, "train")

    def batches(augmentation):
        dataset = pipeline.train_dataset(
            examples, batch_size=4, crop_size=48, seed=5, augmentation=augmentation, num_classes=21
        )
        return list(dataset.take(3).as_numpy_iterator())

    plain, augmented = batches(None), batches(make_layer())
    changed = 0
    for (images, labels), (new_images, new_labels) in zip(plain, augmented):
        assert new_labels.dtype == np.int32 and new_labels.shape == labels.shape
        assert new_images.dtype == np.float32 and new_images.shape == images.shape
        # Nearest sampling: no blended ids, the ignore label survives.
        assert set(np.unique(new_labels).tolist()) <= set(np.unique(labels).tolist())
        assert (labels == 255).any() and (new_labels == 255).any()
        for index in range(len(images)):
            if not np.allclose(images[index], new_images[index]):
                changed += 1
                # The mask moved with the image: class ids sit where their pixels went.
                assert not np.array_equal(labels[index], new_labels[index])
    assert changed > 0


def test_a_hook_must_return_keras_dicts(demo_root):
    examples = voc.read_voc_split(demo_root, "train")
    with pytest.raises(TypeError, match="segmentation_masks"):
        pipeline.train_dataset(
            examples, batch_size=2, crop_size=32, augmentation=lambda data: data["images"],
            num_classes=21,
        )
