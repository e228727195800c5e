"""FunctionalModel: a functional `keras.Model` whose config is its keyword arguments."""

import difflib
import functools
import inspect
import warnings
import weakref

import keras

# Keywords every model takes besides its own (Keras' `Model` handles them).
BASE_ARGUMENTS = ("name", "trainable")


def unknown_keyword_message(owner, keyword, accepted):
    """"`owner` got an unexpected keyword argument 'x' (did you mean 'y'?). Accepted: ..."."""
    close = difflib.get_close_matches(keyword, accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"{owner} got an unexpected keyword argument {keyword!r}{hint}. "
        f"Accepted: {', '.join(sorted(accepted))}."
    )


def with_article(class_name):
    """"an EMANet", "a MobileEMANet"."""
    return f"{'an' if class_name[0] in 'AEIOU' else 'a'} {class_name}"


def check_keywords(owner, keywords, accepted):
    """Raises a `TypeError` for the first keyword (in sorted order) not in `accepted`."""
    unknown = sorted(set(keywords) - set(accepted))
    if unknown:
        raise TypeError(unknown_keyword_message(owner, unknown[0], accepted))


def check_counts(**counts):
    """Raises a ValueError naming the first of `counts` (channels, classes, ...) below 1."""
    for name, value in counts.items():
        if int(value) < 1:
            raise ValueError(f"`{name}` must be >= 1, got {value}.")


def check_dropout(rate):
    """Raises a ValueError unless the dropout `rate` is in [0, 1)."""
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), got {rate}.")


def merge_overrides(levels, classes, shared, overrides, owner, renamed=None):
    """Places each override in the argument dicts `levels` (outermost first) of `classes`.

    A keyword in `shared` goes to every level whose class takes it; any other
    to the innermost that takes it (an encoder's `batch_norm_epsilon` is its
    own). An unknown keyword raises a `TypeError` naming it; an old name in
    `renamed` warns and is renamed.
    """
    renamed = dict(renamed or {})
    for old in set(renamed) & set(overrides):
        warnings.warn(
            f"{owner}({old}=...) is deprecated; use {renamed[old]}=...",
            DeprecationWarning,
            stacklevel=4,
        )
    overrides = {renamed.get(key, key): value for key, value in overrides.items()}
    arguments = [
        set(cls.config_arguments()) - {"backbone", "image_encoder"} for cls in classes
    ]
    # `backbone=` and `image_encoder=` (built models or dicts) are taken before this.
    accepted = set().union(*arguments) | set(BASE_ARGUMENTS)
    accepted |= {"load_weights", "backbone", "image_encoder"}
    check_keywords(owner, overrides, sorted(accepted))
    for key, value in overrides.items():
        targets = [level for level, taken in zip(levels, arguments) if key in taken]
        if key in BASE_ARGUMENTS or not targets:
            targets = levels[:1]
        elif key not in shared:
            targets = targets[-1:]
        for level in targets:
            level[key] = value


def _checked_init(init):
    """Wraps a subclass `__init__`: keywords checked and renamed, or a clone."""
    parameters = list(inspect.signature(init).parameters.values())
    keywords = [
        p.replace(kind=p.KEYWORD_ONLY)
        for p in parameters[1:]
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if args:
            # keras.models.clone_model calls cls(inputs, outputs, name=...)
            # when the constructor takes *args and **kwargs (this wrapper).
            self._init_as_clone(*args, **kwargs)
            return
        cls = type(self)
        for old, new in cls._renamed_arguments.items():
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{cls.__name__} got both {new!r} and its old name {old!r}.")
                warnings.warn(
                    f"{cls.__name__}({old}=...) is deprecated; use {new}=...",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
        check_keywords(cls.__name__, kwargs, cls.config_arguments() + list(BASE_ARGUMENTS))
        init(self, **kwargs)

    # What inspect and Keras see: (self, *args, <the keywords>, **kwargs). Keras 3.15's
    # clone_model reads it (functional_like_constructor; tests/test_keras_internals.py).
    # Keras reads the *args and **kwargs as "functional-like" and clones into
    # this class; inspect.signature still lists the real keywords.
    del __init__.__wrapped__
    __init__.__signature__ = inspect.Signature(
        [parameters[0], inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL)]
        + keywords
        + [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
    )
    __init__.keyword_arguments = [p.name for p in keywords]
    return __init__


class FunctionalModel(keras.Model):
    """A functional model built from keyword arguments, which are its config.

    A subclass lists its arguments once, in the signature of its `__init__`
    (keyword-only), builds the graph, calls `super().__init__(inputs=...,
    outputs=..., name=..., dtype=...)` and stores every argument as an
    attribute of the same name (resolved: a `None` default replaced by what
    was built). This base then gives it:

    - unknown keywords refused with a `TypeError` that names the keyword,
      suggests the closest accepted one and lists them all (Keras' functional
      constructor would drop them silently);
    - `_renamed_arguments` (old name -> new) accepted with a
      `DeprecationWarning`, and silently by `from_config`, so files saved
      under the old name still load;
    - `_defaults_of_older_files` (argument -> value): what `from_config`
      uses when a saved config lacks an argument added since, so an old file
      keeps its old behaviour even where new models default otherwise;
    - `get_config` read from those attributes (nested models such as the
      backbone serialised) and `from_config` back;
    - `keras.models.clone_model(model)` of the same class, with its
      attributes (a plain `Functional` otherwise).
    """

    _renamed_arguments = {}
    _defaults_of_older_files = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _checked_init(cls.__dict__["__init__"])

    @classmethod
    def config_arguments(cls):
        """The keyword arguments of the constructors of `cls` and its bases, in order."""
        names = []
        for klass in reversed(cls.__mro__):
            own = getattr(klass.__dict__.get("__init__"), "keyword_arguments", ())
            names += [name for name in own if name not in names]
        return names

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        for name in self.config_arguments():
            if name != "dtype":
                value = getattr(self, name)
                if isinstance(value, keras.layers.Layer):
                    value = keras.saving.serialize_keras_object(value)
                config[name] = value
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for old, new in cls._renamed_arguments.items():
            if old in config:  # a file saved before the rename
                config[new] = config.pop(old)
        for name, value in cls._defaults_of_older_files.items():
            config.setdefault(name, value)  # a file saved before the argument existed
        for name, value in config.items():
            if name != "dtype" and isinstance(value, dict) and "class_name" in value:
                config[name] = keras.saving.deserialize_keras_object(value)
        return cls(**config)

    # === keras.models.clone_model ===
    # clone_model runs the model's graph on new inputs with cloned layers
    # (`_run_through_graph`), then builds `cls(inputs, outputs, name=...)`.
    # The outputs are marked with the model whose graph they copy, so that the
    # clone takes its arguments (with its own cloned sub-models).

    # Keras 3.15 internal (no public route; tests/test_keras_internals.py): the graph
    # walk of clone_model.
    def _run_through_graph(self, *args, **kwargs):
        outputs = super()._run_through_graph(*args, **kwargs)
        for tensor in keras.tree.flatten(outputs):
            if isinstance(tensor, keras.KerasTensor):
                tensor._ema_keras_graph_of = weakref.ref(self)
        return outputs

    def _init_as_clone(self, inputs, outputs, name=None, **kwargs):
        sources = {
            getattr(tensor, "_ema_keras_graph_of", lambda: None)()
            for tensor in keras.tree.flatten(outputs)
        }
        source = sources.pop() if len(sources) == 1 else None
        if type(source) is not type(self):
            raise TypeError(
                f"{type(self).__name__} takes keyword arguments only; "
                f"build it with {type(self).__name__}(...) or from_config()."
            )
        super().__init__(
            inputs=inputs, outputs=outputs, name=name, dtype=source.dtype_policy, **kwargs
        )
        cloned = {layer.name: layer for layer in self.layers}
        for argument in self.config_arguments():
            if argument == "dtype":  # a property of every layer
                continue
            value = getattr(source, argument)
            if isinstance(value, keras.layers.Layer) and value.name in cloned:
                value = cloned[value.name]
            setattr(self, argument, value)
