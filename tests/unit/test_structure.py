"""The package's structure, checked on the source: the drivers stay outside, stages stay apart, the
registry only talks to the registry."""

from __future__ import annotations

from import_graph import PACKAGE, all_imports, import_graph, module_name

#: stage-package modules that are not stages: the package itself (it re-exports them) and what they share
NOT_STAGES = {"drlrec.stages", "drlrec.stages.common"}


def test_no_module_of_the_package_imports_the_drivers_in_flows():
    offenders = sorted(
        module_name(path) for path in PACKAGE.rglob("*.py")
        if any(m == "flows" or m.startswith("flows.") for m in all_imports(path))
    )
    assert offenders == [], f"import flows/: {offenders}"


def test_no_stage_module_imports_another_stage_module():
    graph = import_graph()
    stages = {name for name in graph if name.startswith("drlrec.stages.")} - NOT_STAGES
    assert {"drlrec.stages.ingest", "drlrec.stages.train", "drlrec.stages.register", "drlrec.stages.ab"} <= stages
    offenders = {name: sorted(graph[name] & stages) for name in stages if graph[name] & stages}
    assert offenders == {}, f"stage modules importing other stage modules: {offenders}"
    # and nothing below the stages imports a stage: the shells sit on top of the core
    below = {name: sorted(deps & (stages | NOT_STAGES)) for name, deps in graph.items()
             if not name.startswith(("drlrec.stages", "drlrec.cli")) and deps & (stages | NOT_STAGES)}
    assert below == {}, f"core modules importing stage shells: {below}"


def test_the_registry_module_imports_neither_featurize_nor_evaluate():
    deps = import_graph()["drlrec.registry"]
    assert not {m for m in deps if m.startswith(("drlrec.features", "drlrec.evaluate", "drlrec.stages"))}, sorted(deps)
