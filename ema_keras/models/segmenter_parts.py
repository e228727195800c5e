"""The parts of any EMANet segmenter, whichever layout it has (the family's, or 0.1's).

An `EMANetImageSegmenter` holds its image encoder inside its backbone
(`model.backbone.image_encoder`); 0.1's `EMANet` and `MobileEMANet` hold it
as their backbone (`model.backbone`). Tools that train, load or measure a
trunk ask here, so both kinds of model (every file ever saved) work.
"""

import keras


def image_encoder_of(model):
    """The image encoder (the ImageNet trunk: `DilatedResNet`, `MobileNetV3Backbone`) of `model`.

    A segmenter of either layout, or a backbone (`EMANetBackbone`,
    `MobileEMANetBackbone`); an encoder is its own.
    """
    holder = getattr(model, "backbone", model)
    return getattr(holder, "image_encoder", holder)


def architecture_of(model):
    """"emanet" or "mobile_emanet": the preset architecture of the model's layout (or None)."""
    return getattr(model.backbone, "architecture", None) or getattr(model, "architecture", None)


def architecture_of_config(config):
    """`architecture_of` for a serialised model config (a `.keras` file's `config.json`)."""
    from_class = {"EMANet": "emanet", "MobileEMANet": "mobile_emanet"}
    if config.get("class_name") in from_class:
        return from_class[config["class_name"]]
    backbone = (config.get("config") or {}).get("backbone") or {}
    return {
        "EMANetBackbone": "emanet",
        "MobileEMANetBackbone": "mobile_emanet",
    }.get(backbone.get("class_name"))


def find_layer(model, name):
    """(layer, the model whose graph holds it) for the layer called `name`, at any depth.

    The family's `ema_unit` sits in the backbone, 0.1's in the segmenter
    itself; the owner's input is the image in both. Raises a ValueError
    when no layer has that name.
    """
    for layer in model.layers:
        if layer.name == name:
            return layer, model
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            try:
                return find_layer(layer, name)
            except ValueError:
                pass
    raise ValueError(f"No layer named {name!r} in model {model.name!r}.")
