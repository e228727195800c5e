"""ImageNet channel statistics, the normalisation every EMANet backbone was trained with.

In pixel units (0..255), as uint8 images come: the usual 0..1 values x 255.
Free of TensorFlow so the models can read them on any Keras backend.
"""

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
