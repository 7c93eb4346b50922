"""Partitioned ingest and featurize: the single pass's outputs, computed per user-hash partition.

Every user belongs to one partition (`partition_of`), so everything per user is computed inside one
partition, in parallel; only three small steps see all partitions:

ingest     1. `ingest_chunk` (one per line-aligned byte range of the raw log; one for gzip): parse and check
              rows exactly as the single pass, quarantine bad rows, route kept rows to their user's partition.
           2. `ingest_partition` (one per partition): sort by (user, time, file order), drop exact duplicates.
           3. `ingest_combine`: merge the sorted partitions by user id into events.parquet (bounded memory),
              map every quarantined row to its physical line, write the report.
featurize  1. `featurize_count` (per partition): train-period events per (item, behaviour), (category, behaviour).
           2. `featurize_globals`: add the counts up -> vocabularies and train statistics (counts of disjoint
              event sets add up, so they equal the single pass's fit).
           3. `featurize_partition` (per partition): every per-event feature with those globals.
           4. `featurize_combine`: interleave the partitions' events back into (user, time) order and write
              the transitions, vocabularies, statistics and report as `drlrec featurize` does.

Tasks exchange file paths and small dicts, never large arrays, so they run on any Dask cluster whose
workers share `paths.partitions` (flows/partitioned.py maps them as Prefect tasks on a DaskTaskRunner);
`run_partitioned_ingest` / `run_partitioned_featurize` run them with any `map` (the builtin one by default).

The package: `common` (the user-hash partition of a user), `ingest` (byte ranges -> partitions -> the
combined events) and `featurize` (counts -> globals -> per-partition transitions -> the combined splits).
"""

from __future__ import annotations

from drlrec.partitioned.common import (  # noqa: F401
    _FEATURE_FIELDS,
    ORDINAL_BITS,
    check_partitions,
    partition_of,
)
from drlrec.partitioned.featurize import (  # noqa: F401
    FeaturizePlan,
    _merged_vocab_counts,
    _read_partition,
    featurize_combine,
    featurize_count,
    featurize_globals,
    featurize_partition,
    plan_featurize,
    run_partitioned_featurize,
)
from drlrec.partitioned.ingest import (  # noqa: F401
    IngestPlan,
    _merge_by_user,
    ingest_chunk,
    ingest_combine,
    ingest_outputs,
    ingest_partition,
    plan_ingest,
    run_partitioned_ingest,
)
