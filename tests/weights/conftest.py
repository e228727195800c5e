"""Shared helpers of the weights tests: the PyTorch reference and tiny checkpoints."""

import os
import sys

import numpy as np
import pytest

from ema_keras.imagenet import IMAGENET_MEAN, IMAGENET_STD

# bench/ (the PyTorch reference) lives at the repository root.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Small enough for seconds on a CPU, with the official widths: one block per
# stage (each still has its projection shortcut) and a narrow head.
TINY_BLOCKS = (1, 1, 1, 1)
TINY_HEAD = dict(head_channels=64, classifier_channels=32, num_bases=8)


@pytest.fixture(scope="session")
def reference():
    """The PyTorch EMANet reference module (skips the test where torch is absent)."""
    pytest.importorskip("torch")
    from bench.torch_reference import emanet_torch

    return emanet_torch


def image(size=65, seed=0):
    """A (1, size, size, 3) float32 image, ImageNet-normalised in spirit."""
    return np.random.RandomState(seed).randn(1, size, size, 3).astype("float32")


def pixels(normalised):
    """The raw RGB pixels (0..255 in spirit) that ImageNet-normalise to `normalised`.

    The PyTorch reference takes normalised images; the converted Keras model
    takes raw pixels and normalises them itself: the same weights, fed the
    same image, must compute the same thing.
    """
    return (normalised * np.float32(IMAGENET_STD) + np.float32(IMAGENET_MEAN)).astype("float32")


def torch_forward(module, image_nhwc, method=None):
    """Runs a PyTorch module on an NHWC image, returns NHWC numpy."""
    import torch

    with torch.no_grad():
        tensor = torch.from_numpy(np.ascontiguousarray(image_nhwc.transpose(0, 3, 1, 2)))
        output = (getattr(module, method) if method else module)(tensor)
    return output.numpy().transpose(0, 2, 3, 1)


def save_official_checkpoint(reference, path, *, num_classes=5, seed=0, **kwargs):
    """A random official-format checkpoint `{"net": ..., "step": 0}`; returns the model."""
    import torch

    torch.manual_seed(seed)
    model = reference.EMANet(num_classes, **kwargs)
    reference.randomize_(model, seed=seed).eval()
    torch.save(reference.official_checkpoint(model, step=0), path)
    return model
