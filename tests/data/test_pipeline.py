"""Augmentation invariants of the training pipeline, and the evaluation pipeline."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ema_keras.data import pipeline, voc

MEAN = np.array(pipeline.IMAGENET_MEAN, np.float32)
STD = np.array(pipeline.IMAGENET_STD, np.float32)


def _coordinate_label(height, width):
    ys, xs = np.mgrid[0:height, 0:width]
    return ((xs + 7 * ys) % 21).astype(np.uint8)


@pytest.fixture
def coordinate_examples(tmp_path):
    """PNG images whose red/green values are the pixel's x/y, labels a function of (x, y)."""
    examples = []
    for index, (height, width) in enumerate([(40, 48), (36, 44), (44, 40)]):
        ys, xs = np.mgrid[0:height, 0:width]
        image = np.stack([xs, ys, np.full_like(xs, 100)], axis=-1).astype(np.uint8)
        image_path = str(tmp_path / f"img{index}.png")
        label_path = str(tmp_path / f"lab{index}.png")
        Image.fromarray(image).save(image_path)
        Image.fromarray(_coordinate_label(height, width)).save(label_path)
        examples.append(voc.VOCExample(f"img{index}", image_path, label_path))
    return examples


def _pixels(images):
    return images  # the pipeline yields raw pixels (0..255)


def _check_alignment(images, labels, scale=1.0):
    """Every non-padded pixel's label is the function of the coordinates its colour encodes."""
    pixels = _pixels(images)
    padded = labels == 255
    # The padding is exactly the ImageNet mean pixel (0 after the model's normalisation).
    np.testing.assert_array_equal(images[padded], np.broadcast_to(MEAN, images[padded].shape))
    x = np.round(pixels[..., 0]).astype(int)
    y = np.round(pixels[..., 1]).astype(int)
    expected = (x + 7 * y) % 21
    np.testing.assert_array_equal(labels[~padded], expected[~padded])
    np.testing.assert_allclose(pixels[..., 2][~padded], 100, atol=1e-3)
    return pixels


def test_crops_stay_aligned_with_flips_and_padding(coordinate_examples):
    dataset = pipeline.train_dataset(
        coordinate_examples, batch_size=3, crop_size=(42, 46), scales=(1.0,), seed=3, num_classes=21
    )
    directions = set()
    for images, labels in dataset.take(8).as_numpy_iterator():
        assert images.shape == (3, 42, 46, 3) and images.dtype == np.float32
        assert labels.shape == (3, 42, 46) and labels.dtype == np.int32
        pixels = _check_alignment(images, labels)
        for i in range(3):
            row = np.round(pixels[i, 0, :, 0])[labels[i, 0] != 255]
            directions.add(np.sign(row[1] - row[0]))
        # crops larger than some images on some side: padding happens at the bottom/right.
    assert directions == {1, -1}  # both flipped and unflipped crops occurred


def test_scale_two_keeps_alignment(coordinate_examples):
    dataset = pipeline.train_dataset(
        coordinate_examples, batch_size=2, crop_size=32, scales=(2.0,), seed=0, num_classes=21
    )
    for images, labels in dataset.take(4).as_numpy_iterator():
        assert (labels != 255).all()  # a 2x image is bigger than the crop: no padding
        _check_alignment(images, labels)


def test_random_scales_change_the_content_size(coordinate_examples):
    # With scale s, neighbouring pixels differ by 1/s in x: read s back from the image.
    dataset = pipeline.train_dataset(
        coordinate_examples, batch_size=1, crop_size=24, scales=(0.5, 2.0), flip=False, seed=1,
        num_classes=21,
    )
    steps = set()
    for images, labels in dataset.take(12).as_numpy_iterator():
        pixels = _pixels(images)[0, :, :, 0]
        valid = labels[0] != 255
        row = pixels[0][valid[0]]
        steps.add(round(float(np.median(np.diff(row))), 1))
    assert steps == {2.0, 0.5}


def test_padding_label_and_value_range(coordinate_examples):
    dataset = pipeline.train_dataset(
        coordinate_examples, batch_size=3, crop_size=64, scales=(1.0,), seed=0, num_classes=21
    )
    images, labels = next(iter(dataset.as_numpy_iterator()))
    assert (labels == 255).any()
    # Every image here is smaller than 64 on each side: the bottom-right corner is padding.
    assert (labels[:, -1, -1] == 255).all()
    np.testing.assert_array_equal(images[:, -1, -1], np.broadcast_to(MEAN, (3, 3)))
    assert images.min() >= 0.0 and images.max() <= 255.0


def test_normalize_option_gives_the_normalised_batches(coordinate_examples):
    options = dict(batch_size=3, crop_size=64, scales=(1.0, 2.0), seed=4)
    raw = pipeline.train_dataset(coordinate_examples, **options, num_classes=21)
    normalised = pipeline.train_dataset(
        coordinate_examples, normalize=True, **options, num_classes=21
    )
    for (pixels, labels), (images, same_labels) in zip(
        raw.take(2).as_numpy_iterator(), normalised.take(2).as_numpy_iterator()
    ):
        np.testing.assert_array_equal(labels, same_labels)
        np.testing.assert_allclose(images, (pixels - MEAN) / STD, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(images[labels == 255], 0.0)  # the padding, exactly


def test_normalize_image_matches_imagenet_statistics():
    image = tf.constant([[[0, 128, 255]]], tf.uint8)
    expected = (np.array([0, 128, 255]) - np.array([123.675, 116.28, 103.53])) / np.array(
        [58.395, 57.12, 57.375]
    )
    np.testing.assert_allclose(pipeline.normalize_image(image).numpy()[0, 0], expected, rtol=1e-5)


def test_deterministic_under_a_seed(demo_root):
    examples = voc.read_voc_split(demo_root, "train")

    def batches(seed):
        dataset = pipeline.train_dataset(
            examples, batch_size=2, crop_size=32, seed=seed, num_classes=21
        )
        return list(dataset.take(3).as_numpy_iterator())

    first, again, other = batches(5), batches(5), batches(6)
    for (a_img, a_lab), (b_img, b_lab) in zip(first, again):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_lab, b_lab)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other))


def test_scale_range_and_argument_errors(coordinate_examples):
    dataset = pipeline.train_dataset(
        coordinate_examples, batch_size=1, crop_size=16, scale_range=(0.7, 1.3), seed=0,
        num_classes=21,
    )
    images, labels = next(iter(dataset))
    assert images.shape == (1, 16, 16, 3)
    with pytest.raises(ValueError, match="not both"):
        pipeline.train_dataset(
            coordinate_examples, batch_size=1, scales=(1.0, 2.0), scale_range=(0.5, 2.0),
            num_classes=21,
        )
    with pytest.raises(ValueError, match="scale_range"):
        pipeline.train_dataset(
            coordinate_examples, batch_size=1, scale_range=(2.0, 1.0), num_classes=21
        )
    with pytest.raises(ValueError, match="crop_size"):
        pipeline.train_dataset(coordinate_examples, batch_size=1, crop_size=(0, 4), num_classes=21)
    with pytest.raises(ValueError, match="empty"):
        pipeline.train_dataset([], batch_size=1, num_classes=21)


def test_train_shards_and_per_replica_batch(coordinate_examples):
    contexts = [tf.distribute.InputContext(2, i, 2) for i in range(2)]
    for context in contexts:
        dataset = pipeline.train_dataset(
            coordinate_examples, batch_size=4, crop_size=16, seed=0, input_context=context,
            num_classes=21,
        )
        assert dataset.element_spec[0].shape == (2, 16, 16, 3)
    seen = []
    for context in contexts:
        dataset = pipeline.eval_dataset(
            coordinate_examples, batch_size=2, input_context=context, with_metadata=True,
            num_classes=21,
        )
        seen.append([m["image_id"][0].decode() for _, _, m in dataset.as_numpy_iterator()])
    assert sorted(seen[0] + seen[1]) == ["img0", "img1", "img2"]
    assert not set(seen[0]) & set(seen[1])


def test_distribute_datasets_from_function(mirrored_strategy, coordinate_examples):
    distributed = mirrored_strategy.distribute_datasets_from_function(
        lambda context: pipeline.train_dataset(
            coordinate_examples,
            batch_size=4,
            crop_size=16,
            scales=(1.0,),
            seed=0,
            input_context=context, num_classes=21,
        )
    )
    images, labels = next(iter(distributed))
    local_images = mirrored_strategy.experimental_local_results(images)
    local_labels = mirrored_strategy.experimental_local_results(labels)
    assert [tuple(t.shape) for t in local_images] == [(2, 16, 16, 3), (2, 16, 16, 3)]
    for image, label in zip(local_images, local_labels):
        _check_alignment(image.numpy(), label.numpy())


def test_eval_full_images_in_order(coordinate_examples):
    dataset = pipeline.eval_dataset(coordinate_examples, with_metadata=True, num_classes=21)
    for (images, labels, metadata), example in zip(
        dataset.as_numpy_iterator(), coordinate_examples
    ):
        height, width = np.asarray(Image.open(example.label_path)).shape
        assert images.shape == (1, height, width, 3) and labels.shape == (1, height, width)
        assert metadata["image_id"][0].decode() == example.image_id
        np.testing.assert_array_equal(labels[0], _coordinate_label(height, width))
        # Raw pixels, exactly the decoded file.
        np.testing.assert_array_equal(images[0], np.asarray(Image.open(example.image_path)))
        _check_alignment(images, labels)


def _confusion(prediction, label, num_classes=21):
    valid = label != 255
    return np.bincount(label[valid] * num_classes + prediction[valid], minlength=num_classes**2)


def test_eval_pad_to_scores_like_the_original_size(coordinate_examples):
    padded = pipeline.eval_dataset(
        coordinate_examples, batch_size=3, pad_to=(48, 50), num_classes=21
    )
    images, labels = next(iter(padded.as_numpy_iterator()))
    assert images.shape == (3, 48, 50, 3) and labels.shape == (3, 48, 50)
    prediction = np.random.default_rng(0).integers(0, 21, size=labels.shape)
    padded_score = sum(_confusion(prediction[i], labels[i]) for i in range(3))
    original_score = 0
    whole = pipeline.eval_dataset(coordinate_examples, num_classes=21)
    for i, (_, label) in enumerate(whole.as_numpy_iterator()):
        height, width = label.shape[1:]
        original_score = original_score + _confusion(prediction[i, :height, :width], label[0])
        mean_rows = np.broadcast_to(MEAN, (48 - height, 50, 3))
        np.testing.assert_array_equal(images[i, height:], mean_rows)
        assert (labels[i, :, width:] == 255).all()
    np.testing.assert_array_equal(padded_score, original_score)
    normalised = pipeline.eval_dataset(
        coordinate_examples, batch_size=3, pad_to=(48, 50), normalize=True, num_classes=21
    )
    normalised_images = next(iter(normalised.as_numpy_iterator()))[0]
    np.testing.assert_allclose(normalised_images, (images - MEAN) / STD, rtol=1e-5, atol=1e-5)


def test_eval_batches_without_pad_to_pad_to_the_largest(coordinate_examples):
    dataset = pipeline.eval_dataset(
        coordinate_examples[:2], batch_size=2, with_metadata=True, num_classes=21
    )
    images, labels, metadata = next(iter(dataset.as_numpy_iterator()))
    assert images.shape == (2, 40, 48, 3)
    assert metadata["height"].tolist() == [40, 36] and metadata["width"].tolist() == [48, 44]
    assert (labels[1, 36:] == 255).all() and (labels[1, :, 44:] == 255).all()
    # Padded with the mean pixel, like pad_to; the real pixels are untouched.
    np.testing.assert_array_equal(images[1, 36:], np.broadcast_to(MEAN, (4, 48, 3)))
    np.testing.assert_array_equal(images[1, :, 44:], np.broadcast_to(MEAN, (40, 4, 3)))
    decoded = np.asarray(Image.open(coordinate_examples[1].image_path))
    np.testing.assert_array_equal(images[1, :36, :44], decoded)


def test_eval_image_larger_than_pad_to_names_it(coordinate_examples):
    dataset = pipeline.eval_dataset(coordinate_examples, pad_to=(40, 40), num_classes=21)
    with pytest.raises(tf.errors.InvalidArgumentError, match="img0"):
        list(dataset)


def test_cache_gives_the_same_batches(demo_root, tmp_path):
    examples = voc.read_voc_split(demo_root, "val")
    plain = pipeline.train_dataset(examples, batch_size=2, crop_size=24, seed=1, num_classes=21)
    cached = pipeline.train_dataset(
        examples, batch_size=2, crop_size=24, seed=1, cache=True, num_classes=21
    )
    on_disk = pipeline.train_dataset(
        examples, batch_size=2, crop_size=24, seed=1, cache=str(tmp_path / "cache"), num_classes=21
    )
    for a, b, c in zip(*(d.take(3).as_numpy_iterator() for d in (plain, cached, on_disk))):
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[1], c[1])
        np.testing.assert_array_equal(a[0], b[0])
    assert any(name.startswith("cache") for name in os.listdir(tmp_path))
