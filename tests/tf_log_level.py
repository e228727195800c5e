"""The TensorFlow C++ log level of the test session and of the processes tests start.

Quieter than the library's `ema_keras.backend.TF_LOG_LEVEL` (1: warnings
shown), as the programs' is: tests build hundreds of models and functions,
whose retracing and converter warnings would bury a failure's output, so only
errors show. It is set before TensorFlow loads (importing ema_keras loads it),
which is why it cannot be read from the library. Tests of the programs' own
output run them without it, at the level the programs choose themselves
(tests/test_cli.py, tests/test_log_filter.py).
"""

TESTS_TF_LOG_LEVEL = "2"
