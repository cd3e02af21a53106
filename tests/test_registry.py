"""Finding backends: entry points, --plugin, and the messages when that fails."""

import pytest

from harness.protocol import Backend
from harness.run import registry


def test_shipped_backends_come_through_the_entry_point_group():
    names = {loaded.name for loaded in registry.discover()}
    assert {"numpy", "torch", "tensorflow", "jax"} <= names
    numpy = next(b for b in registry.discover() if b.name == "numpy")
    assert numpy.origin.startswith("entry point numpy")
    assert numpy.availability() is None


def test_plugin_class_instance_and_list():
    assert [b.name for b in registry.load_plugin("tests.plugins.broken:SubtlyWrong")] == [
        "subtly-wrong"]
    assert [b.name for b in registry.load_plugin("tests.plugins.crashy:BACKENDS")] == [
        "aborting", "hanging"]


def test_spec_round_trip_loads_the_same_backend():
    (loaded,) = registry.load_plugin("tests.plugins.broken:SubtlyWrong")
    again = registry.load_spec(loaded.spec)
    assert isinstance(again, Backend) and again.name == "subtly-wrong"
    numpy = next(b for b in registry.discover() if b.name == "numpy")
    assert registry.load_spec(numpy.spec).name == "numpy"


@pytest.mark.parametrize("target, message", [
    ("no_colon", "not of the form MODULE:ATTR"),
    ("no_such_module_xyz:Thing", "cannot be imported"),
    ("tests.plugins.broken:Missing", "has no attribute"),
    ("tests.plugins.broken:np", "is not a Backend"),
])
def test_bad_plugins_are_usage_errors(target, message):
    with pytest.raises(registry.UsageError, match=message):
        registry.load_plugin(target)


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(registry.UsageError, match=r"Known backends: .*numpy"):
        registry.select(registry.discover(), ["nope"])


def test_info_has_the_report_fields():
    numpy = next(b for b in registry.discover() if b.name == "numpy")
    info = numpy.info()
    assert info["implementations"] == ["formula", "naive"]
    assert info["dtypes"] == ["float16", "bfloat16", "float32", "float64"]
    assert info["descriptions"]["naive"]
