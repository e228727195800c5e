"""EMANet models: the dilated ResNet backbone, the segmenter and its presets."""

from ema_keras.models.dilated_resnet import DilatedResNet, dilation_scheme

__all__ = ["DilatedResNet", "dilation_scheme"]
