"""Benchmarks: `pytest benches/ --benchmark-group-by=group` (not part of the test suite).

Each benchmark records, next to its timing, whether its answer is correct
(`extra_info["entropy_error"]` against float64 LAPACK), as orjson does.
"""
