"""The TensorFlow C++ log level of the test session and of the processes tests start.

Quieter than the programs' `ema_keras.backend.TF_LOG_LEVEL` (1: warnings
shown): tests build hundreds of models and functions, whose retracing and
converter warnings would bury a failure's output, so only errors show. It is
set before TensorFlow loads (importing ema_keras loads it), which is why it
cannot be read from the library. Tests of the programs' own output run them
with the library's level (tests/test_cli.py, tests/test_log_filter.py).
"""

TESTS_TF_LOG_LEVEL = "2"
