"""Runs a program (recipes/, export/, ema-keras-validate) in this process, as its command would.

Each program defines absl flags in the one global FLAGS, and several share names
(--model_dir, --data_dir): a program's flags are removed before the next one
loads, and after it ran, so tests can run them in any order.
"""

import importlib.util
import os
import sys

from absl import flags

from ema_keras import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = {
    "train_voc.py": "recipes/train_voc.py",
    "eval_voc.py": "recipes/eval_voc.py",
    "predict.py": "recipes/predict.py",
    "export_model.py": "export/export_model.py",
    "convert_pytorch.py": "export/convert_pytorch.py",
    "ema-keras-validate": None,  # ema_keras.validation_program, its flags defined when it runs
}
FLAGS = flags.FLAGS


def _is_program_module(name):
    return (
        name.endswith("_program")
        # tests/training/test_recipe_flags.py loads train_voc without registering
        # it, and absl then files its flags under importlib's module.
        or name in ("train_voc_recipe", "importlib._bootstrap")
        or name == "ema_keras.validation_program"
    )


def remove_program_flags():
    for module_name, module_flags in list(FLAGS.flags_by_module_dict().items()):
        if _is_program_module(module_name):
            for flag in list(module_flags):
                if flag.name in FLAGS:
                    delattr(FLAGS, flag.name)


def load_program(name):
    """The program's module, its flags (and no other program's) defined."""
    remove_program_flags()
    if PROGRAMS[name] is None:
        from ema_keras import validation_program

        validation_program.define_flags()
        return validation_program
    stem = os.path.splitext(name)[0]
    spec = importlib.util.spec_from_file_location(
        f"{stem}_program", os.path.join(REPO, PROGRAMS[name])
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so that absl files the flags under the program's name
    spec.loader.exec_module(module)
    return module


def run_program(name, *args):
    """`name args...` through the shared start-up (flags parsed, errors as one line); its status."""
    module = load_program(name)
    try:
        return cli.execute(module.main, [name, *args], **getattr(module, "ERRORS", {}))
    finally:
        FLAGS.unparse_flags()
        remove_program_flags()
