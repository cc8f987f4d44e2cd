"""The architecture holds: no import circle, store names only in the schema, no overlong function."""

from __future__ import annotations

from tools import check_names, function_lengths, import_graph


def test_no_import_circle_between_modules_or_packages():
    lines, ok = import_graph.report()
    assert ok, "\n".join(lines)


def test_library_imports_flow_one_way():
    found = import_graph.modules()
    library = import_graph.package_graph(found, import_graph.module_graph(found), entry_points=False)
    assert library["store"] == set()
    assert library["analyses"] <= {"store"}  # analyses never load a model
    assert library["capture"] <= {"store"}
    assert "toy" not in set().union(*(targets for package, targets in library.items() if package != "toy"))


def test_no_store_name_spelled_outside_the_schema():
    assert check_names.report() == []


def test_no_function_over_the_limit():
    assert function_lengths.long_functions() == []
