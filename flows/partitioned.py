"""Partitioned ingest and featurize as Prefect flows whose per-partition tasks run on Dask.

The tasks are the functions of drlrec.partitioned (one per byte range / user-hash partition, then a combine);
Prefect maps them on a `DaskTaskRunner`: a local cluster by default (scale.dask_workers in-process
workers), or the existing cluster at `scale.dask_address`, whose workers must see paths.partitions and
the inputs and outputs at the same paths. The outputs are those of `drlrec ingest` / `drlrec featurize`.

    partitioned_ingest_flow(params)                            -> the ingest report (dict)
    partitioned_featurize_flow(params)                         -> the featurize report (dict)
    partitioned_ingest_featurize_flow(params_path, overrides)  -> {"ingest", "validate", "featurize"}
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE

from drlrec import partitioned
from drlrec.config import Params, ScaleConfig, load_params
from drlrec.settings import apply_offline_env

apply_offline_env()


def dask_task_runner(cfg: ScaleConfig):
    """Prefect's DaskTaskRunner for `cfg`: the cluster at dask_address, else a temporary local one."""
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": cfg.dask_workers,
            "threads_per_worker": cfg.dask_threads_per_worker,
            "processes": cfg.dask_processes,
            "dashboard_address": None,
        }
    )


def _task(name: str):
    # results are files on shared storage plus small dicts: nothing worth caching or retrying blindly
    return task(name=name, retries=0, cache_policy=NO_CACHE)


ingest_chunk = _task("ingest-chunk")(partitioned.ingest_chunk)
ingest_partition = _task("ingest-partition")(partitioned.ingest_partition)
ingest_combine = _task("ingest-combine")(partitioned.ingest_combine)
featurize_count = _task("featurize-count")(partitioned.featurize_count)
featurize_globals = _task("featurize-globals")(partitioned.featurize_globals)
featurize_partition = _task("featurize-partition")(partitioned.featurize_partition)
featurize_combine = _task("featurize-combine")(partitioned.featurize_combine)


@task(name="validate", retries=0, cache_policy=NO_CACHE)
def validate(params: Params) -> dict[str, Any]:
    from drlrec.stages import validate_stage

    return validate_stage(params).to_dict()


@flow(name="partitioned-ingest", log_prints=True, validate_parameters=False)
def _ingest_flow(params: Params) -> dict[str, Any]:
    import time

    started = time.perf_counter()
    events, quarantine, report = partitioned.ingest_outputs(params)
    plan = partitioned.plan_ingest(params.paths.raw_data, params.paths.partitions, params.scale.partitions, params.ingest)
    chunks = ingest_chunk.map(unmapped(plan), list(range(len(plan.ranges))))
    parts = ingest_partition.map(unmapped(plan), list(range(plan.partitions)), wait_for=chunks)
    result = ingest_combine.submit(plan, chunks, parts, events, quarantine, report, started).result()
    print(
        f"ingest ({plan.partitions} partitions, {len(plan.ranges)} byte ranges): read {result.rows_read:,} rows, "
        f"kept {result.rows_kept:,}, quarantined {result.rows_quarantined:,} in {result.seconds:.1f}s -> {events}"
    )
    return result.to_dict()


@flow(name="partitioned-featurize", log_prints=True, validate_parameters=False)
def _featurize_flow(params: Params) -> dict[str, Any]:
    plan = partitioned.plan_featurize(params)
    partitions = list(range(plan.partitions))
    counted = featurize_count.map(unmapped(plan), partitions)
    fitted = featurize_globals.submit(plan, counted)
    featurized = featurize_partition.map(unmapped(plan), partitions, unmapped(fitted))
    report = featurize_combine.submit(plan, featurized, fitted, params.paths.features).result()
    print(
        f"featurize ({plan.partitions} partitions): {report['events']:,} events of {report['users']:,} users "
        f"-> {params.paths.features}"
    )
    return report


def partitioned_ingest_flow(params: Params) -> dict[str, Any]:
    """`drlrec ingest` per user-hash partition on Dask (scale: section); returns the ingest report."""
    return _ingest_flow.with_options(task_runner=dask_task_runner(params.scale))(params)


def partitioned_featurize_flow(params: Params) -> dict[str, Any]:
    """`drlrec featurize` per user-hash partition on Dask (scale: section); returns the featurize report."""
    return _featurize_flow.with_options(task_runner=dask_task_runner(params.scale))(params)


@flow(name="partitioned-ingest-featurize", log_prints=True)
def partitioned_ingest_featurize_flow(
    params_path: str = "params.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    """ingest -> validate -> featurize with the data-parallel stages on Dask; a failed expectation suite
    stops the flow before featurize. Params are built once, here."""
    params = load_params(params_path, tuple(overrides or ()))
    results: dict[str, Any] = {"ingest": partitioned_ingest_flow(params)}
    results["validate"] = validate(params)
    results["featurize"] = partitioned_featurize_flow(params)
    return results
