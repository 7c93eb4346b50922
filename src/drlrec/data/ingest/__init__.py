"""Streaming ingest: raw behaviour CSV (plain or gzip, with or without header) -> typed, sorted events.parquet.

Two input formats (`ingest.format`):

- `taobao`: the UserBehavior schema `user_id,item_id,category_id,behavior_type,timestamp`.
- `diginetica`: the CIKM Cup 2016 `train-item-views.csv`, `;`-separated with the header
  `sessionId;userId;itemId;timeframe;eventdate` (as published; SR-GNN's copy spells it `session_id;...`),
  views only. Sessions stand in for users (user_id = session_id; the `user_id` column is mostly `NA`,
  anonymous, and is only checked for form); behaviour = pv; timestamp = Unix seconds of `eventdate` at
  00:00 UTC + `timeframe` // 1000 (timeframe is milliseconds since the session's first query);
  category_id = DIGINETICA_CATEGORY for every row, because Diginetica's item categories are in a separate
  file (product-categories.csv) that ingest does not read. Two views of the same item in the same second
  of a session are exact duplicates after this mapping (quarantined as `duplicate`).

Memory is bounded by the Arrow block size and `ingest.bucket_rows`, never by the file size:

1. One pass streams the CSV in Arrow record batches (every column read as raw bytes, so no row can abort
   the reader) and rejects bad rows with vectorized checks. While the input is sorted by (user, time),
   as generated logs are, duplicates are removed on the fly and kept rows go straight to the output.
2. From the first out-of-order row on (the original Taobao file orders users as strings, not numbers),
   rows go to a spill file; at the end everything is range-partitioned by user id (boundaries from a
   sample of user ids) into buckets of about `bucket_rows` rows, each sorted and deduplicated in memory.

Every rejected row goes to quarantine.parquet with its physical line number, a reason and its raw bytes,
so rows_read == rows_kept + rows_quarantined always holds. Outputs appear atomically (temp file + rename).

The package: `source` (opening a file: format, compression, header, byte ranges), `parse` (Arrow batches
and the vectorized row checks), `writers` (events and quarantine outputs), `dedupe` (duplicates and the
external sort by user and time), `run` (ingest_file, the whole pass) and `read` (read_events, for
profiling and calibration).
"""

from __future__ import annotations

from drlrec.data.ingest.dedupe import (  # noqa: F401
    _count_new_users,
    _dedupe_sorted,
    _duplicate_mask,
    _external_sort,
    _sorted_by_user_time,
    _work_batches,
)
from drlrec.data.ingest.parse import (  # noqa: F401
    _BEHAVIOR_VALUES,
    _CHECKERS,
    _DATE_PATTERN,
    _ID_COLUMNS,
    _REASON_CODE,
    _REASON_NAMES,
    _SORTED_WITH_ORDINAL,
    _UINT_PATTERN,
    _WORK_SCHEMA,
    _Batch,
    _check_batch,
    _check_diginetica_batch,
    _iter_batches,
    _LineMapper,
    _parse_ids,
    _raw_text,
)
from drlrec.data.ingest.read import (  # noqa: F401
    read_events,
)
from drlrec.data.ingest.run import (  # noqa: F401
    IngestResult,
    _ingest,
    ingest_file,
)
from drlrec.data.ingest.source import (  # noqa: F401
    _DELIMITER,
    _GZIP_MAGIC,
    _PEEK_BYTES,
    DIGINETICA_CATEGORY,
    DIGINETICA_COLUMNS,
    FORMATS,
    ByteRange,
    _header_names,
    _is_diginetica_header,
    _looks_binary,
    _peek,
    _Source,
    line_aligned_ranges,
    sniff,
)
from drlrec.data.ingest.writers import (  # noqa: F401
    _BackgroundWriter,
    _events_table,
    _events_writer,
    _QuarantineWriter,
    _raw_of_rows,
    quarantine_batch,
)
