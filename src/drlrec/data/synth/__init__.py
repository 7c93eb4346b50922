"""The calibrated Taobao-like log generator: a seeded, vectorized model of users browsing, carting and buying.

The model, drawn for all users of a chunk at once (no Python loop per user or per event):

1. Catalogue: categories with Zipf popularity; every item in exactly one category, with Zipf popularity
   inside it; Taobao-like sparse ids.
2. Volume: events per user from a lognormal whose mu/sigma give the target median and mean.
3. Time: events fall into sessions (geometric lengths, a per-user mean) separated by more than
   `session_gap` seconds; sessions start at times drawn from a day/night curve (UTC+8) and are pushed
   apart (segmented running max / min) so they never overlap and stay in the window.
4. Behaviour: drawn from the target mix, independently per event, so the mix holds exactly in expectation.
5. Interest: each user has a few preferred categories that drift from day to day; an event falls in a
   preferred category with `preference_strength`, else in a category drawn by popularity, and inside a
   session keeps the category drawn for the event before it with `category_stickiness`.
6. Memory: a pv re-views an item the user viewed before with `review_rate`; carts, favs and buys land
   on an earlier viewed (or, for buys, carted) item with their funnel probabilities, recent items first;
   an event never repeats the item of the event just before it (the real log never does).

Chunks of `CHUNK_USERS` users draw from their own generator, derived from (seed, chunk index), so the
output depends only on the config and the seed, and memory is bounded by the chunk size.

The package: `generator` (the catalogue, time, interest and the generated events, and the drifted
period), `output` (row orders and the raw CSV) and `calibration` (the generator's parameters fitted on a
real log).
"""

from __future__ import annotations

from drlrec.data.synth.generator import (  # noqa: F401
    CHUNK_USERS,
    Catalogue,
    GAP_SIGMA,
    HOURLY_ACTIVITY,
    ID_SPACE,
    PREFERENCE_DECAY,
    RECENCY,
    REPEAT_FIX_PASSES,
    _check,
    _draw_items,
    _exclusive_count,
    _fresh_categories,
    _generate_chunk,
    _generate_users,
    _hour_curve,
    _items,
    _pick_earlier,
    _preferences,
    _segment_starts,
    _segmented_cummax,
    _segmented_reverse_cummin,
    _timestamps,
    _zipf_cdf,
    build_catalogue,
    drift_period,
    generate,
    generate_drift,
    lognormal_params,
    shift_catalogue,
)
from drlrec.data.synth.output import (  # noqa: F401
    FULL_SCALE,
    GZIP_LEVEL,
    _raw_batch,
    order_rows,
    write_csv,
)
from drlrec.data.synth.calibration import (  # noqa: F401
    CALIBRATION_MAX_REPLICATES,
    CALIBRATION_MAX_USERS,
    CALIBRATION_ROUNDS,
    CALIBRATION_TARGETS,
    CALIBRATION_USERS,
    _Target,
    _lookup,
    calibrate,
)
