"""The demo recipe shrunk for tests: a few steps on a small generated set, in seconds.

One home for the settings the TensorFlow tests (the `tiny_config` fixture in
tests/training/conftest.py) and the JAX recipe program
(tests/backends/jax_recipe_checks.py, run in its own process) share.
"""

TINY_TRAINING = dict(
    crop_size=64,
    global_batch_size=4,
    steps=2,
    steps_per_checkpoint=1,
    warmup_steps=0,
    eval_pad_size=80,
    verbose=0,
)
