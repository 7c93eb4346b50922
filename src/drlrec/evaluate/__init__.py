"""Metrics and the evaluation protocol shared by every model: full ranking over all items.

A target's rank is 1 + the number of recommendable items ranked above it, where "above" means a higher
score, or an equal score and a lower item index (the same tie rule as `models.base.top_k`, so a
hit@k here is exactly "the target is in recommend(k)"). Padding and unknown items are never ranked;
a target that is itself unknown (a cold item) can't be hit and counts as a miss, never dropped.

The package: `ranking` (ranks and block-wise full ranking), `statistics` (bootstrap CIs over users, paired
differences), `protocol` (targets, exclusions, target types, evaluate_model), `tables` (the markdown tables)
and `champion` (re-scoring a registered model on the current split).
"""

from __future__ import annotations

from drlrec.evaluate.champion import (  # noqa: F401
    evaluate_bundle,
)
from drlrec.evaluate.protocol import (  # noqa: F401
    _USER_STRIDE,
    BREAKDOWN_K,
    COLD,
    IN_HISTORY,
    IN_STATE,
    KNOWN_NEW,
    PROTOCOL,
    TARGET_TYPES,
    Evaluation,
    EventRanks,
    FirstSeen,
    PriorBuys,
    TargetSet,
    _score_lists,
    evaluate_model,
    protocol_text,
    target_sets,
    target_types,
    type_breakdown,
)
from drlrec.evaluate.ranking import (  # noqa: F401
    DEFAULT_KS,
    ITEM_BLOCK,
    NEAR_CAP,
    UNRANKABLE,
    RankedEvents,
    exclusion_pairs,
    rank_blocks,
    rank_events,
    ranking_metrics,
    score_blocks,
    target_ranks,
    validation_evaluator,
)
from drlrec.evaluate.statistics import (  # noqa: F401
    Interval,
    bootstrap_means,
    coverage_interval,
    excludes_zero,
    list_metrics,
    paired_difference,
    per_event_values,
    set_metrics,
    user_bootstrap_means,
)
from drlrec.evaluate.tables import (  # noqa: F401
    HEADLINE,
    PAIRED,
    _cell,
    _diff_cell,
    _label,
    _metric_values,
    _share,
    full_table,
    markdown_table,
    paired_comparison,
    paired_table,
    type_table,
    versus_table,
)
