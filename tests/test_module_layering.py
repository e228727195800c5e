"""Which module may import which, and facts kept in one place (issue 22).

The imports are checked in fresh processes (`sys.modules`) and in the source:
every `import` statement, at module level or inside a function, since a
function-level import that closes a circle is a circle too, only a
later-failing one.
"""

import ast
import glob
import inspect
import os
import subprocess
import sys

import keras
import pytest

from ema_keras import layers, serialization
from ema_keras.data import pipeline
from tests.cli_testing import REPO


def modules_after_import(module):
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=300, check=True)
    return set(run.stdout.split())


def test_the_validator_lives_with_the_programs_and_data_does_not_load_the_cli():
    loaded = modules_after_import("ema_keras.data.validate")
    assert "ema_keras.cli" not in loaded and "ema_keras.validation_program" not in loaded
    assert not os.path.exists(os.path.join(REPO, "ema_keras", "data", "validation_program.py"))
    with open(os.path.join(REPO, "pyproject.toml")) as file:
        assert 'ema-keras-validate = "ema_keras.validation_program:console_main"' in file.read()
    from ema_keras import validation_program

    assert callable(validation_program.console_main)


def test_strategy_and_config_do_not_import_each_other():
    assert "ema_keras.training.config" not in modules_after_import("ema_keras.training.strategy")


def test_the_training_and_inference_precisions_have_distinct_names():
    from ema_keras.inference import precision
    from ema_keras.training import config

    assert config.TRAINING_PRECISIONS == ("float32", "mixed_float16", "mixed_bfloat16")
    assert precision.INFERENCE_PRECISIONS == ("auto", "float32", "bfloat16")
    assert not hasattr(config, "PRECISIONS")


def test_layers_register_under_the_one_package_name():
    assert serialization.PACKAGE == "ema_keras"  # part of the file format: never changes
    for name in ("EMAUnit", "EMALayer", "SyncBatchNormalization", "DilatedConv2D"):
        cls = getattr(layers, name)
        assert keras.saving.get_registered_name(cls) == f"ema_keras>{cls.__name__}"
    for path in glob.glob(os.path.join(REPO, "ema_keras", "**", "*.py"), recursive=True):
        if path.endswith(os.path.join("ema_keras", "serialization.py")):
            continue  # the one home
        source = open(path).read()
        assert 'package="ema_keras"' not in source and '"ema_keras>' not in source, path


def test_the_generic_pipeline_has_no_default_class_count():
    for function in (pipeline.train_dataset, pipeline.eval_dataset):
        parameter = inspect.signature(function).parameters["num_classes"]
        assert parameter.default is inspect.Parameter.empty, function.__name__
    with pytest.raises(TypeError, match="num_classes"):
        pipeline.eval_dataset([])


def test_bench_shares_code_as_a_package_without_path_edits():
    scripts = glob.glob(os.path.join(REPO, "bench", "*.py"))
    names = {os.path.basename(path)[: -len(".py")] for path in scripts}
    for path in scripts:
        source = open(path).read()
        assert "sys.path.insert" not in source, path
        # Every import of a sibling goes through the package, function-level ones too.
        for node in ast.walk(ast.parse(source)):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level else []
            )
            for module in modules:
                assert module.split(".")[0] not in names, f"{path}: import {module}"
    run = subprocess.run([sys.executable, "-m", "bench.cost_table", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert "--quick" in run.stdout, run.stderr[-2000:]


# === The import graph of the package, read from the source ===

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ema_keras")

# What each package must never import (its own modules and lower ones only).
# Programs and `cli` are the top; layers and data are the bottom of the library.
_ABOVE_THE_LIBRARY = ("ema_keras.cli", "ema_keras.validation_program")
FORBIDDEN = {
    "ema_keras.layers": ("ema_keras.models", "ema_keras.data", "ema_keras.training",
                         "ema_keras.inference", "ema_keras.export", "ema_keras.weights",
                         "ema_keras.quantization",
                         *_ABOVE_THE_LIBRARY),
    "ema_keras.data": ("ema_keras.models", "ema_keras.training", "ema_keras.inference",
                       "ema_keras.export", "ema_keras.weights", *_ABOVE_THE_LIBRARY),
    "ema_keras.models": ("ema_keras.training", "ema_keras.inference", "ema_keras.export",
                         "ema_keras.quantization", *_ABOVE_THE_LIBRARY),
    "ema_keras.weights": ("ema_keras.training", "ema_keras.inference", "ema_keras.export",
                          *_ABOVE_THE_LIBRARY),
    # Inference may read a training run (its record, its model files): not the reverse.
    "ema_keras.inference": ("ema_keras.export", "ema_keras.quantization", *_ABOVE_THE_LIBRARY),
    "ema_keras.training": ("ema_keras.inference", "ema_keras.export", *_ABOVE_THE_LIBRARY),
    # Quantization-aware training folds with inference's folding; export writes its files.
    "ema_keras.quantization": ("ema_keras.training", "ema_keras.export", *_ABOVE_THE_LIBRARY),
    "ema_keras.export": ("ema_keras.training", *_ABOVE_THE_LIBRARY),
}  # fmt: skip


def module_files():
    """{module name: path} for every module of the package (a package is its __init__)."""
    modules = {}
    for folder, _, files in os.walk(ROOT):
        for file in files:
            if not file.endswith(".py"):
                continue
            relative = os.path.relpath(os.path.join(folder, file), os.path.dirname(ROOT))
            name = relative[: -len(".py")].replace(os.sep, ".")
            modules[name[: -len(".__init__")] if name.endswith(".__init__") else name] = (
                os.path.join(folder, file)
            )
    return modules


def imports_of(name, path, modules):
    """The package's modules that module `name` imports anywhere in its source."""
    is_package = path.endswith("__init__.py")
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                package = name if is_package else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    package = package.rsplit(".", 1)[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module
            for alias in node.names:
                # `from package import module` imports the module; a name, the package.
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {target for target in targets if target in modules and target != name}


def import_graph():
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_circle(graph):
    """One import circle as a list of modules (first == last), or None."""
    state = {}  # module -> "open" while on the path, "done" after

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                circle = visit(target, path + [target])
                if circle:
                    return circle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            circle = visit(module, [module])
            if circle:
                return circle
    return None


def test_the_graph_is_read():
    graph = import_graph()
    assert len(graph) > 100
    # Known edges, both kinds: module level, and inside a function.
    assert "ema_keras.weights.loading" in graph["ema_keras.models.image_segmenter"]
    assert "ema_keras.models.emanet_backbone" in graph["ema_keras.weights.convert"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_circles():
    graph = import_graph()
    # The root package imports its subpackages for registration; they never import it.
    graph["ema_keras"] = set()
    assert find_circle(graph) is None, " -> ".join(find_circle(graph))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_from_a_lower_package_to_a_higher_one(package):
    graph = import_graph()
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module == package or module.startswith(package + ".")
        for target in targets
        if any(target == above or target.startswith(above + ".") for above in FORBIDDEN[package])
    )
    assert not wrong, "\n".join(wrong)
