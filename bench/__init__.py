"""The benchmarks, run from the repository root as modules: `python -m bench.<name>`.

They share `bench.common` (machine header, timing, peak memory, tables) and
import each other as `bench.<name>`, with no path set up by hand.
"""
