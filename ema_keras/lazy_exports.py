"""A package's public names, each loaded from its module on first use (PEP 562).

`ema_keras.data` and `ema_keras.training` export names from modules that need
TensorFlow next to modules that need only Keras; loading each on first use lets
the Keras-only ones import on JAX and PyTorch without TensorFlow.
"""

import importlib


def lazy_exports(package, exports, package_globals):
    """(`__getattr__`, `__dir__`) for `package` whose names come from `exports`.

    exports: {public name: module of the package that defines it}. A name that
    is not exported but is a submodule is imported, as `package.module` read
    when the package imported its modules eagerly.
    """

    def __getattr__(name):
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{package}.{name}":
                raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(package_globals) | set(exports))

    return __getattr__, __dir__
