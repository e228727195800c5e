"""Reading every replica's copy of a variable, to test that replicas agree."""

import keras
import numpy as np


def replica_copies(variable):
    """The value of `variable` on each replica, as numpy arrays (one outside a strategy)."""
    value = variable.value if isinstance(variable, keras.Variable) else variable
    components = getattr(value, "values", None)
    if components is None:
        return [np.asarray(value.numpy())]
    return [np.asarray(component.numpy()) for component in components]


def assert_identical_on_every_replica(variables, num_replicas):
    """Every variable holds the same bits on all `num_replicas` replicas."""
    different = []
    for variable in variables:
        copies = replica_copies(variable)
        assert len(copies) == num_replicas, (variable.path, len(copies))
        if any(not np.array_equal(copies[0], copy) for copy in copies[1:]):
            spread = max(float(np.max(np.abs(copies[0] - c))) for c in copies[1:])
            different.append(f"{variable.path} (max difference {spread:.3g})")
    assert not different, f"{len(different)} variable(s) differ between replicas: {different[:10]}"
