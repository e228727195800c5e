"""The tf.data pipelines for training and evaluation, all in the graph.

Training follows the official EMANet recipe, one image at a time: decode,
random scale (one of 0.5, 0.75, ..., 2.0, or uniform in a range), pad the
image with the ImageNet mean and the label with 255 up to the crop size,
random crop, horizontal flip with p = 0.5, then batch.

Images come out as raw RGB pixels, float32 in 0..255: the models normalise
inside their graph (see docs/input_contract.md), and the padding is the
ImageNet mean pixel, which that normalisation turns into 0, as in the official
code. `normalize=True` ImageNet-normalises in the pipeline instead, for a
model that expects normalised input (`ema_keras.models.expects_raw_pixels`
says which: built with `include_preprocessing=False`, or saved before the
models took raw pixels).

Randomness is stateless: every example draws from a seed made of the pipeline
seed, the input pipeline id and the example's position in the stream, so a
seed fixes the batches whatever the parallelism, and shuffling uses the same
seed. Under tf.distribute, pass the `tf.distribute.InputContext` that
`strategy.distribute_datasets_from_function` hands over: the files are sharded
by input pipeline and the batch is the per-replica one. Without it, auto-
sharding is set to DATA on purpose (the file-list datasets here cannot be
sharded by file).
"""

import random

import tensorflow as tf

from ema_keras.data.decode import apply, source_dataset
from ema_keras.data.voc import IGNORE_LABEL
from ema_keras.imagenet import IMAGENET_MEAN, IMAGENET_STD

OFFICIAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def normalize_image(image):
    """uint8 (or float 0..255) RGB to float32 (x - mean) / std, ImageNet statistics."""
    image = tf.cast(image, tf.float32)
    return (image - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


@tf.autograph.experimental.do_not_convert  # plain graph code: nothing to convert
def normalize_pairs(image, label, *metadata):
    """`normalize_image` on the image of an (image, label[, metadata]) element."""
    return (normalize_image(image), label, *metadata)


def _pair(value, name):
    if isinstance(value, int):
        return value, value
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width), got {value}")
    return value


def _per_replica_batch(batch_size, input_context):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if input_context is None:
        return batch_size
    return input_context.get_per_replica_batch_size(batch_size)


def _with_options(dataset, input_context, deterministic):
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF
        if input_context is not None
        else tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def random_scale(image, label, seed, *, scales=OFFICIAL_SCALES, scale_range=None):
    """Resizes image (bilinear) and label (nearest) by a random factor; float32 / int32 out."""
    if scale_range is not None:
        scale = tf.random.stateless_uniform([], seed, scale_range[0], scale_range[1])
    else:
        index = tf.random.stateless_uniform([], seed, 0, len(scales), dtype=tf.int32)
        scale = tf.gather(tf.constant(scales, tf.float32), index)
    size = tf.cast(tf.shape(image)[:2], tf.float32) * scale
    size = tf.maximum(tf.cast(tf.round(size), tf.int32), 1)
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    label = tf.image.resize(label[..., None], size, method="nearest")[..., 0]
    return image, tf.cast(label, tf.int32)


def pad_with_mean(image, paddings):
    """Pads an (H, W, 3) image by `paddings` (2x2) with the ImageNet mean pixel, exactly."""
    channels = tf.unstack(tf.cast(image, tf.float32), num=3, axis=-1)
    return tf.stack(
        [tf.pad(c, paddings, constant_values=m) for c, m in zip(channels, IMAGENET_MEAN)], -1
    )


def pad_to_size(image, label, height, width):
    """Pads bottom/right to at least (height, width): image with the mean, label with 255."""
    shape = tf.shape(label)
    paddings = [[0, tf.maximum(height - shape[0], 0)], [0, tf.maximum(width - shape[1], 0)]]
    image = pad_with_mean(image, paddings)
    label = tf.pad(label - IGNORE_LABEL, paddings) + IGNORE_LABEL
    return image, label


def random_crop(image, label, seed, height, width):
    """The same random (height, width) window of image and label (both at least that big)."""
    seed_y, seed_x = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.shape(label)
    top = tf.random.stateless_uniform([], seed_y, 0, shape[0] - height + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], seed_x, 0, shape[1] - width + 1, dtype=tf.int32)
    image = image[top : top + height, left : left + width]
    label = label[top : top + height, left : left + width]
    return tf.ensure_shape(image, [height, width, 3]), tf.ensure_shape(label, [height, width])


def random_flip(image, label, seed):
    """Mirrors image and label left-right together with probability 0.5."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    return tf.cond(
        flip,
        lambda: (tf.reverse(image, [1]), tf.reverse(label, [1])),
        lambda: (image, label),
    )


def _augmentation_on_pairs(augmentation):
    """A hook on Keras' `{"images", "segmentation_masks"}` dicts as a map on (image, label)."""

    def augment(images, labels):
        data = augmentation({"images": images, "segmentation_masks": labels[..., None]})
        if not isinstance(data, dict) or not {"images", "segmentation_masks"} <= set(data):
            raise TypeError(
                "augmentation= must return a dict with 'images' and 'segmentation_masks' "
                f"(Keras' augmentation format), got {type(data).__name__}"
            )
        masks = data["segmentation_masks"]
        if masks.dtype.is_floating:
            masks = tf.round(masks)
        images = tf.ensure_shape(tf.cast(data["images"], tf.float32), images.shape)
        return images, tf.ensure_shape(tf.cast(masks[..., 0], tf.int32), labels.shape)

    return augment


def train_dataset(
    examples,
    *,
    batch_size,
    crop_size=513,
    scales=OFFICIAL_SCALES,
    scale_range=None,
    flip=True,
    seed=None,
    input_context=None,
    cache=False,
    shuffle_buffer=1024,
    augmentation=None,
    num_parallel_calls=tf.data.AUTOTUNE,
    num_classes,
    normalize=False,
):
    """Infinite batches of (image, label) random crops for training.

    Args:
      examples: a list of VOCExample, a TFRecord glob pattern, or a Dataset of
        decoded example dicts (see `ema_keras.data.decode`).
      batch_size: the global batch size; divided by the number of replicas
        when `input_context` is given.
      crop_size: an int or (height, width).
      scales: the discrete scale factors to draw from (official: 0.5..2.0 by
        0.25); `None` or `(1.0,)` for no scaling.
      scale_range: `(min, max)` to draw the factor uniformly instead; exclusive
        with a non-default `scales`.
      flip: random horizontal flips.
      seed: int fixing shuffling and augmentation; None draws one.
      input_context: a `tf.distribute.InputContext` to shard by.
      cache: True caches the read files in memory, a path caches them on disk
        (pays for datasets that fit; the demo set always does).
      shuffle_buffer: examples in the shuffle buffer for TFRecord and Dataset
        sources (a list of files is always shuffled whole).
      augmentation: an optional callable on Keras' augmentation format, a dict
        `{"images": float32 (B, H, W, 3) in 0..255, "segmentation_masks":
        int32 (B, H, W, 1), 255 = ignore}`, returning such a dict of the same
        size (float masks are rounded), applied before any normalisation. A Keras
        image layer such as `keras.layers.RandomRotation(0.05)` fits as it is;
        see `ema_keras.data.augment` for the ignore label and constant fills.
      num_classes: the dataset's class count (required: no dataset's is the
        default; `DatasetSpec.num_classes`, 21 for VOC). Every decoded label
        is checked whole, before the crop: an id >= num_classes other than 255
        fails naming the file (None: no check).
      normalize: False (default) yields raw pixels, what the models take;
        True yields ImageNet-normalised images, for a model that expects them
        (`normalize=not expects_raw_pixels(model)`).

    Returns:
      A dataset of (image float32 (B, crop_h, crop_w, 3): pixels in 0..255,
      padding the mean pixel; or normalised, padding 0; label int32
      (B, crop_h, crop_w), padding 255), with drop_remainder so B is static.
    """
    crop_height, crop_width = _pair(crop_size, "crop_size")
    if scale_range is not None:
        if scales not in (OFFICIAL_SCALES, None):
            raise ValueError(
                "give either scales (a discrete set) or scale_range (min, max), not both"
            )
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(
                f"scale_range must be (min, max) with 0 < min <= max, got {scale_range}"
            )
        scale_range = tuple(float(s) for s in scale_range)
    scales = tuple(float(s) for s in (scales or (1.0,)))
    if min(scales) <= 0:
        raise ValueError(f"scales must be positive, got {scales}")
    per_replica_batch = _per_replica_batch(batch_size, input_context)
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    stream_seed = (int(seed) * 7919 + pipeline_id) % (2**31)

    dataset, read_fn, decode_fn = source_dataset(
        examples, input_context=input_context, num_classes=num_classes
    )
    if read_fn is not None and cache is not False:
        dataset = dataset.map(read_fn, num_parallel_calls=num_parallel_calls, deterministic=True)
        read_fn = None
    if cache is not False:
        dataset = dataset.cache("" if cache is True else str(cache))
    buffer = len(examples) if isinstance(examples, (list, tuple)) else shuffle_buffer
    dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat().enumerate()

    @tf.autograph.experimental.do_not_convert  # plain graph code: nothing to convert
    def prepare(index, element):
        if read_fn is not None:
            element = apply(read_fn, element)
        example = apply(decode_fn, element)
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(stream_seed, tf.int64), index]), 3
        )
        image, label = random_scale(
            example["image"], example["label"], seeds[0], scales=scales, scale_range=scale_range
        )
        image, label = pad_to_size(image, label, crop_height, crop_width)
        image, label = random_crop(image, label, seeds[1], crop_height, crop_width)
        if flip:
            image, label = random_flip(image, label, seeds[2])
        return image, label

    dataset = dataset.map(prepare, num_parallel_calls=num_parallel_calls, deterministic=True)
    dataset = dataset.batch(per_replica_batch, drop_remainder=True)
    if augmentation is not None:
        # Sequential: a Keras layer's random state is a variable.
        dataset = dataset.map(_augmentation_on_pairs(augmentation))
    if normalize:
        dataset = dataset.map(
            normalize_pairs, num_parallel_calls=num_parallel_calls, deterministic=True
        )
    return _with_options(dataset.prefetch(tf.data.AUTOTUNE), input_context, deterministic=True)


@tf.autograph.experimental.do_not_convert
def _mean_for_batch_padding(images, labels, metadata):
    mean = tf.constant(IMAGENET_MEAN, tf.float32)
    return tf.where(images < 0.0, mean, images), labels, metadata


def eval_dataset(
    examples,
    *,
    batch_size=1,
    pad_to=None,
    input_context=None,
    with_metadata=False,
    cache=False,
    num_classes,
    normalize=False,
):
    """Whole images for evaluation, in the source's order, one pass.

    Images are raw pixels (float32, 0..255), never resized; `normalize=True`
    ImageNet-normalises them, as for `train_dataset`. With `pad_to=(H, W)`
    every image is padded bottom/right to exactly that size (image with the
    ImageNet mean pixel, 0 after normalisation; label with 255), so the shapes
    are static and scoring the padded prediction equals scoring at the
    original size. Without it, batches of several images are padded the same
    way to the largest one.

    `num_classes` is the dataset's class count (required, as for
    `train_dataset`). Every label is checked whole: an id >= `num_classes`
    other than 255 fails naming the file instead of being scored as nothing
    (None: no check).

    Yields (image float32 (B, H, W, 3), label int32 (B, H, W)), plus a dict of
    `image_id`, `height` and `width` (the original size) when `with_metadata`.
    """
    per_replica_batch = _per_replica_batch(batch_size, input_context)
    if pad_to is not None:
        pad_height, pad_width = _pair(pad_to, "pad_to")
    dataset, read_fn, decode_fn = source_dataset(
        examples, input_context=input_context, num_classes=num_classes
    )
    if read_fn is not None and cache is not False:
        dataset = dataset.map(read_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        read_fn = None
    if cache is not False:
        dataset = dataset.cache("" if cache is True else str(cache))

    @tf.autograph.experimental.do_not_convert
    def prepare(*element):
        element = element if len(element) > 1 else element[0]
        if read_fn is not None:
            element = apply(read_fn, element)
        example = apply(decode_fn, element)
        image = tf.cast(example["image"], tf.float32)
        label = tf.cast(example["label"], tf.int32)
        shape = tf.shape(label)
        metadata = {"image_id": example["image_id"], "height": shape[0], "width": shape[1]}
        if pad_to is not None:
            fits = tf.logical_and(shape[0] <= pad_height, shape[1] <= pad_width)
            check = tf.debugging.Assert(
                fits,
                ["image larger than pad_to:", example["image_id"], shape, [pad_height, pad_width]],
            )
            with tf.control_dependencies([check]):
                paddings = [[0, pad_height - shape[0]], [0, pad_width - shape[1]]]
            image = tf.ensure_shape(pad_with_mean(image, paddings), [pad_height, pad_width, 3])
            label = tf.pad(label - IGNORE_LABEL, paddings) + IGNORE_LABEL
            label = tf.ensure_shape(label, [pad_height, pad_width])
        return image, label, metadata

    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if pad_to is not None:
        dataset = dataset.batch(per_replica_batch)
    else:
        # padded_batch fills with one scalar: -1, which no pixel has, marks
        # the padding, which then becomes the mean pixel like pad_to's.
        padding_values = (-1.0, IGNORE_LABEL, {"image_id": "", "height": 0, "width": 0})
        dataset = dataset.padded_batch(per_replica_batch, padding_values=padding_values)
        dataset = dataset.map(_mean_for_batch_padding)
    if normalize:
        dataset = dataset.map(normalize_pairs)
    if not with_metadata:
        dataset = dataset.map(tf.autograph.experimental.do_not_convert(lambda i, l, m: (i, l)))
    return _with_options(dataset.prefetch(tf.data.AUTOTUNE), input_context, deterministic=True)
