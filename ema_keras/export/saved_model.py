"""SavedModel export with serving signatures for TF Serving and `tf.saved_model.load`.

Signatures (inputs are raw RGB pixels or encoded images; the size policy of
`ema_keras.export.preprocessing`, the model's own normalisation, or for a
model that expects normalised input `model_inputs`' one, and the argmax are
in the graph):

- `serving_bytes` (also `serving_default`): `image_bytes`, string (B,), JPEG
  or PNG files as they are on disk. Each image is decoded as the training
  pipeline decodes it and segmented separately; returns `labels`, int32
  (B, H_max, W_max), each image's label map at its original size in the
  top-left corner and -1 outside it, `image_size`, int32 (B, 2), and, unless
  exported without, `probabilities`, float32 (B, H_max, W_max, classes), 0
  outside the image.
- `serving_images`: `images`, float32 (B, H, W, 3) pixels 0..255, all of one
  size; returns `logits` (float32), `labels` (int32) and optionally
  `probabilities`, all at (B, H, W).
- `serving_images_uint8`: the same for uint8 pixels.
"""

import keras
import tensorflow as tf

from ema_keras.data.decode import decode_image
from ema_keras.export.preprocessing import fit_to_canvas, restore_size
from ema_keras.models.input_contract import model_inputs
from ema_keras.models.outputs import main_logits

BYTES_SIGNATURE = "serving_bytes"
IMAGES_SIGNATURE = "serving_images"
UINT8_IMAGES_SIGNATURE = "serving_images_uint8"
OUTSIDE_IMAGE_LABEL = -1


def make_logits_fn(model, image_size=None):
    """A function from (B, H, W, 3) pixels to (B, H, W, classes) logits, under the size policy.

    `image_size=None` runs the model on the images as they are; (height,
    width) runs it on the canvas of that size (see `fit_to_canvas`).
    """
    image_size = _checked_size(image_size)

    def logits_fn(images):
        images = tf.cast(images, tf.float32)
        if image_size is None:
            return main_logits(model(model_inputs(model, images), training=False))
        canvas, content_size = fit_to_canvas(images, image_size)
        logits = main_logits(model(model_inputs(model, canvas), training=False))
        return restore_size(logits, content_size, tf.shape(images)[1:3])

    return logits_fn


def _checked_size(image_size):
    if image_size is None:
        return None
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"`image_size` must be None or (height, width) >= 1, got {image_size!r}.")
    return size


def _image_outputs(logits, with_probabilities):
    outputs = {"logits": logits, "labels": tf.argmax(logits, axis=-1, output_type=tf.int32)}
    if with_probabilities:
        outputs["probabilities"] = tf.nn.softmax(logits, axis=-1)
    return outputs


def make_serving_functions(model, image_size=None, with_probabilities=True):
    """The signature functions, by name, with their input signatures: {name: (fn, [spec])}."""
    logits_fn = make_logits_fn(model, image_size)
    num_classes = int(main_logits(model.output).shape[-1])

    def serve_images(images):
        return _image_outputs(logits_fn(images), with_probabilities)

    def serve_bytes(image_bytes):
        # Decoded twice: once for the batch's largest size (cheap next to the
        # network), once to segment each image at its own size.
        sizes = tf.map_fn(
            lambda encoded: tf.shape(decode_image(encoded, "image_bytes"))[:2],
            image_bytes,
            fn_output_signature=tf.TensorSpec([2], tf.int32),
        )
        max_size = tf.reduce_max(sizes, axis=0)

        def segment(encoded):
            image = decode_image(encoded, "image_bytes")[None]
            logits = logits_fn(image)[0]
            size = tf.shape(logits)[:2]
            paddings = [[0, max_size[0] - size[0]], [0, max_size[1] - size[1]]]
            labels = tf.argmax(logits, axis=-1, output_type=tf.int32)
            labels = tf.pad(labels, paddings, constant_values=OUTSIDE_IMAGE_LABEL)
            probabilities = tf.pad(tf.nn.softmax(logits, axis=-1), paddings + [[0, 0]])
            return labels, probabilities

        labels, probabilities = tf.map_fn(
            segment,
            image_bytes,
            fn_output_signature=(
                tf.TensorSpec([None, None], tf.int32),
                tf.TensorSpec([None, None, num_classes], tf.float32),
            ),
        )
        outputs = {"labels": labels, "image_size": sizes}
        if with_probabilities:
            outputs["probabilities"] = probabilities
        return outputs

    return {
        BYTES_SIGNATURE: (serve_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
        IMAGES_SIGNATURE: (
            serve_images,
            [tf.TensorSpec([None, None, None, 3], tf.float32, name="images")],
        ),
        UINT8_IMAGES_SIGNATURE: (
            serve_images,
            [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
        ),
    }


def export_saved_model(model, path, *, image_size=None, with_probabilities=True, verbose=False):
    """Writes `model` as a SavedModel with the serving signatures above.

    Args:
        model: an EMANet (or any Keras model mapping images, raw pixels or
            ImageNet-normalised as `expects_raw_pixels` says, to logits, or to
            a dict with "logits").
        path: the SavedModel folder to write.
        image_size: None to segment every image at its own size, or
            (height, width) to run on a canvas of that size (pad, or scale
            down then pad; logits brought back to the original size).
        with_probabilities: also return softmax probabilities.

    Returns:
        `path`.
    """
    functions = make_serving_functions(model, image_size, with_probabilities)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, input_signature) in functions.items():
        archive.add_endpoint(name, fn, input_signature=input_signature)
    bytes_fn, bytes_signature = functions[BYTES_SIGNATURE]
    archive.add_endpoint("serving_default", bytes_fn, input_signature=bytes_signature)
    archive.write_out(str(path), verbose=verbose)
    return path
