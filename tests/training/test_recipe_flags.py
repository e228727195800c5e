import importlib.util
import os

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_recipe_module():
    spec = importlib.util.spec_from_file_location(
        "train_voc_recipe", os.path.join(REPO, "recipes", "train_voc.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flags_override_the_named_recipe_and_unset_flags_keep_it():
    recipe = _load_recipe_module()
    flags.FLAGS.unparse_flags()
    flags.FLAGS([
        "train_voc.py", "--recipe=demo", "--model_dir=/tmp/x", "--scales=0.5,1.5",
        "--steps=40", "--novalidate", "--learning_rate=0.1", "--strategy=one_device",
        "--mixed_precision=mixed_bfloat16",
    ])
    try:
        config = recipe.config_from_flags()
    finally:
        flags.FLAGS.unparse_flags()
    assert config.scales == (0.5, 1.5)
    assert config.steps == 40 and config.validate is False and config.learning_rate == 0.1
    assert config.strategy == "one_device" and config.mixed_precision == "mixed_bfloat16"
    # Unset flags keep the demo recipe's values.
    assert config.preset == "emanet_tiny_demo" and config.crop_size == 96
    assert config.global_batch_size == 8
