"""The conformance suite as an installed package, for plugin authors.

From any directory, with only the harness and a backend plugin installed:

    python -m pytest --pyargs harness.conformance --backend NAME

collects one item per dtype of that backend (the harness's pytest plugin,
harness/pytest_plugin.py, parametrizes them) and runs every implementation and
device over the shipped cases, judged against the reference with the shipped
expectations and the plugin's own (the `bce_harness.expectations` entry point).
"""
