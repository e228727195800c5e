"""Attention maps: the EMA unit's per-pixel responsibilities for an image.

After its last E-step the EMA unit holds, for every pixel of its feature map,
a distribution over its K bases (`z`, softmax over K). Those K maps are what
the paper's figures show: each base gathers one kind of region (a person, the
sky, an object's edges), and a base's mass (its responsibilities summed over
the pixels) says how much of the image it explains.

`AttentionMapper` runs the model up to the EMA unit's input with a Keras
sub-model, applies the unit's own input projection, and takes `z` from the
unit's `EMALayer.expectation_maximization`: the EM arithmetic lives in the
layer only. Everything is float32 and single scale (the whole image, as the
model's plain predict path runs it).
"""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from PIL import Image, ImageDraw

from ema_keras.models.input_contract import model_inputs
from ema_keras.models.segmenter_parts import find_layer

EMA_UNIT = "ema_unit"
DEFAULT_NUM_BASES = 8  # tiles of a grid: as many as the paper's figures show
MAX_TILE_SIDE = 256  # a grid tile's longer side, in pixels
TILE_GAP = 2  # white pixels between tiles
GRID_COLUMNS = 4


class MissingAttentionUnitError(ValueError):
    """The model has no EMA unit (a layer named `ema_unit`) to read attention from."""


@dataclasses.dataclass(frozen=True)
class AttentionMaps:
    """Responsibilities of one image.

    Attributes:
        responsibilities: (h, w, K) float32 at the EMA unit's feature resolution;
            at every pixel they sum to 1 over the K bases.
        mass: (K,) float32, each base's responsibilities summed over the pixels
            (they add up to h * w).
    """

    responsibilities: np.ndarray
    mass: np.ndarray

    @property
    def order(self):
        """Base indices, largest mass first (ties: lower index first)."""
        return np.argsort(-self.mass, kind="stable")

    def upsampled(self, size):
        """(height, width, K) responsibilities, bilinearly resized to `size`.

        Bilinear weights add up to 1, so the maps still sum to 1 over K.
        """
        resized = tf.image.resize(self.responsibilities[None], tuple(size), "bilinear")
        return resized[0].numpy()


class AttentionMapper:
    """Computes `AttentionMaps` of images for one model; build once, call per image.

    Args:
        model: an EMANet (built here, or loaded from a `.keras` file) holding a
            layer named `ema_unit`.

    Raises:
        MissingAttentionUnitError: the model has no `ema_unit` layer.
    """

    def __init__(self, model):
        try:
            self.unit, owner = find_layer(model, EMA_UNIT)
        except ValueError:
            raise MissingAttentionUnitError(
                f"model {model.name!r} has no {EMA_UNIT!r} layer: attention maps need an EMANet"
            ) from None
        # From the image to the features the EMA unit receives (the unit's
        # owner, the backbone or 0.1's segmenter, takes the image as it is).
        self.model = model
        self.feature_model = keras.Model(owner.input, self.unit.input, name="ema_unit_input")

    def unit_features(self, images):
        """(B, H, W, 3) raw RGB pixels -> (B, h, w, C) float32 input of the EMA unit."""
        features = self.feature_model(model_inputs(self.model, images), training=False)
        return ops.cast(features, "float32")

    def responsibilities_of_features(self, features):
        """(B, h, w, C) unit inputs -> (B, h, w, K) responsibilities of the last E-step."""
        unit = self.unit
        kernel = ops.cast(unit.input_kernel, "float32")
        bias = ops.cast(unit.input_bias, "float32")
        projected = ops.conv(features, kernel, strides=1, padding="valid") + bias
        z, _ = unit.em_attention.expectation_maximization(projected)  # (B, N, K)
        shape = ops.shape(projected)
        return ops.reshape(z, (shape[0], shape[1], shape[2], unit.num_bases))

    def __call__(self, image):
        """`AttentionMaps` of one (H, W, 3) image.

        Args:
            image: RGB pixels, uint8 (or float 0..255) as read from a file
                (the input of `ema_keras.inference.predict_probabilities`);
                the model gets them as it expects (`model_inputs`).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must be (H, W, 3), got shape {image.shape}")
        batch = image[None].astype(np.float32)
        z = ops.convert_to_numpy(self.responsibilities_of_features(self.unit_features(batch)))[0]
        return AttentionMaps(responsibilities=z, mass=z.sum(axis=(0, 1)))


def attention_maps(model, image):
    """The EMA unit's responsibilities for one (H, W, 3) image, as `AttentionMaps`.

    For many images, build an `AttentionMapper` once and call it per image.
    """
    return AttentionMapper(model)(image)


# --- drawing ------------------------------------------------------------------

# A "hot" ramp: black-red through orange to pale yellow, for responsibilities 0..1.
_HEAT_STOPS = np.array([0.0, 0.35, 0.7, 1.0], np.float32)
_HEAT_COLOURS = np.array(
    [[40, 0, 60], [200, 20, 20], [255, 160, 0], [255, 255, 180]], np.float32
)


def heat_colours(values):
    """Values in [0, 1], any shape -> RGB float32 (..., 3) on a black-red-yellow ramp."""
    values = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    return np.stack(
        [np.interp(values, _HEAT_STOPS, _HEAT_COLOURS[:, channel]) for channel in range(3)],
        axis=-1,
    )


def tile_size(image_shape, max_side=MAX_TILE_SIDE):
    """(height, width) of a grid tile: the image, shrunk to `max_side` if larger."""
    height, width = int(image_shape[0]), int(image_shape[1])
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def grid_layout(num_tiles, columns=GRID_COLUMNS):
    """(rows, columns) of a grid of `num_tiles` tiles."""
    columns = max(1, min(columns, num_tiles))
    return math.ceil(num_tiles / columns), columns


def grid_pixel_size(image_shape, num_tiles, max_side=MAX_TILE_SIDE):
    """(height, width) in pixels of the grid `attention_grid` draws."""
    (tile_height, tile_width), (rows, columns) = tile_size(image_shape, max_side), grid_layout(
        num_tiles
    )
    return (
        rows * tile_height + (rows - 1) * TILE_GAP,
        columns * tile_width + (columns - 1) * TILE_GAP,
    )


def attention_grid(image, maps, num_bases=DEFAULT_NUM_BASES, *, max_side=MAX_TILE_SIDE):
    """The `num_bases` bases of largest mass, each a heat map over the image, in a grid.

    Tiles run left to right, then top to bottom, largest mass first; each is
    labelled with the base's index and its share of the pixels. A pixel's
    colour is its responsibility on an absolute 0..1 scale (not stretched per
    base), blended over the image in proportion to it, so tiles compare.

    Args:
        image: (H, W, 3) uint8 RGB, the image the maps were computed from.
        maps: its `AttentionMaps`.
        num_bases: how many bases to show (at most K).

    Returns:
        (height, width, 3) uint8, of `grid_pixel_size(image.shape, n)` pixels.
    """
    if num_bases < 1:
        raise ValueError(f"num_bases must be >= 1, got {num_bases}")
    bases = maps.order[:num_bases]
    size = tile_size(image.shape, max_side)
    background = np.asarray(
        Image.fromarray(np.asarray(image, np.uint8)).resize(size[::-1], Image.BILINEAR),
        np.float32,
    )
    upsampled = maps.upsampled(size)
    total = float(maps.mass.sum())
    rows, columns = grid_layout(len(bases))
    grid = Image.new("RGB", grid_pixel_size(image.shape, len(bases), max_side)[::-1], "white")
    for position, base in enumerate(bases):
        weight = 0.75 * np.clip(upsampled[..., base], 0.0, 1.0)[..., None]
        tile = (1.0 - weight) * background + weight * heat_colours(upsampled[..., base])
        tile = Image.fromarray(np.clip(tile + 0.5, 0, 255).astype(np.uint8))
        row, column = divmod(position, columns)
        _label(tile, f"#{base} {100.0 * maps.mass[base] / total:.1f}%")
        grid.paste(tile, (column * (size[1] + TILE_GAP), row * (size[0] + TILE_GAP)))
    return np.asarray(grid)


def _label(tile, text):
    draw = ImageDraw.Draw(tile)
    _, _, right, bottom = draw.textbbox((2, 2), text)
    draw.rectangle((0, 0, right + 2, bottom + 2), fill=(0, 0, 0))
    draw.text((2, 2), text, fill=(255, 255, 255))
