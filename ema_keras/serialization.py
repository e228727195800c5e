"""The package every custom class of ema-keras is registered under for `.keras` files.

    @keras.saving.register_keras_serializable(package=PACKAGE)
    class EMAUnit(keras.layers.Layer): ...

A file names each class `"ema_keras>ClassName"`: this string is part of the
file format, so that the files already written keep loading it must never
change. It imports nothing, so that every module can import it.
"""

PACKAGE = "ema_keras"
