"""The lazily loaded packages export what they list, from the modules they name."""

import importlib

import pytest


@pytest.mark.parametrize(
    "package,submodule", [("ema_keras.data", "errors"), ("ema_keras.training", "compiling")]
)
def test_every_exported_name_resolves_to_its_modules_object(package, submodule):
    module = importlib.import_module(package)
    assert module.__all__ and sorted(module.__all__) == module.__all__
    for name in module.__all__:
        defining = importlib.import_module(f"{package}.{module._EXPORTS[name]}")
        assert getattr(module, name) is getattr(defining, name), name
        assert name in dir(module)
    # A submodule reads as an attribute, as it did when the package imported it eagerly.
    assert getattr(module, submodule) is importlib.import_module(f"{package}.{submodule}")
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name
