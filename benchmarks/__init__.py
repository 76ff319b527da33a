"""The performance suite (``pytest benchmarks``; conventions in conftest.py). A package so its
modules are ``benchmarks.test_*`` and never clash with the same basenames in tests/ when both run
in one session (``pytest tests benchmarks``)."""
