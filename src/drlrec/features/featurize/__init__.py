"""featurize: typed events -> temporal split, train-only vocabularies and statistics, per-event features, transitions.

`featurize` computes everything per event once (vectorized, no loop per event or per user); `build_transitions`
then cuts one split's compact event table and state index matrix out of it, so a caller holds one split at a
time. Global statistics (vocabularies, popularity, conversion rates) come from train-period events only;
per-user features of any event come from that user's earlier events, whatever split they fall in.

The package: `core` (the vectorized featurize of a frame of events: vocabularies, statistics, per-event
features), `splits` (the transitions of each split), `outputs` (the split folders, the globals and the
report) and `streaming` (the file featurized in groups of whole users, memory flat in the rows).
"""

from __future__ import annotations

from drlrec.features.featurize.core import (  # noqa: F401
    CATEGORY_VOCAB_FILE,
    DONE_DEFINITION,
    ITEM_VOCAB_FILE,
    REPORT_FILE,
    TRAIN_STATS_FILE,
    EventFeatures,
    FeaturizeResult,
    TrainGlobals,
    _check_events,
    _open_events,
    check_config,
    featurize,
    load_events,
    reward_weight_table,
)
from drlrec.features.featurize.outputs import (  # noqa: F401
    ReportCounts,
    _finish,
    _split_writers,
    _write_part,
    featurize_report,
    write_featurize_outputs,
)
from drlrec.features.featurize.splits import (  # noqa: F401
    _split_rows,
    _SplitRows,
    build_transitions,
)
from drlrec.features.featurize.streaming import (  # noqa: F401
    _batches,
    _progress,
    add_id_counts,
    featurize_file,
    fit_globals_file,
    id_behavior_counts,
    iter_user_chunks,
    merge_id_counts,
    vocab_from_counts,
)
