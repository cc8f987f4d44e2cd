"""Checks of the code's architecture that anyone can run (`python -m tools.import_graph`, ...); the test suite
runs them too (tests/test_architecture.py)."""
