"""The user simulator: which recommended item a user acts on, with which behaviour, and when the user leaves.

Fitted on the train split only, it answers for any state (no user id needed):

* **The next-item model**: a logistic classifier over
  - an affinity factorization: the state's embedding is the mean of its items' and categories' input
    factors, an item's embedding the sum of its item and category output factors, the affinity their dot
    product (so a state seen nowhere in training still gets one);
  - log popularity (train count), re-view (the item is in the state; it is the last item), the category
    of the last item and the share of the state in the item's category.
  It is fitted with binary cross-entropy on (state, logged next item) against `negatives` items drawn
  uniformly from the catalogue. Its probability (`candidate_prob`) is P(this item is the user's next item)
  within such a candidate set; `calibrate` checks exactly that on held-out logs. By Bayes under that
  sampling design its odds are p(i | s) * C / negatives over a catalogue of C items, which gives the
  next-event probability p(i | s) (`next_item_prob`) without scoring the whole catalogue.
* **P(act on a recommended item)** (`interaction_prob`) = 1 - exp(-exposure_boost * p(i | s)). With
  exposure_boost 1 a list is acted on about as often as the user's organic next event falls in it (what
  LogReplayEnv counts as a hit); more models a lift from being recommended (the logs hold no exposures,
  so this is an assumption, stated in params).
* **P(behaviour | act)**: smoothed per-item rates shrunk to the category's (and the category's to the
  global rate), times a multiplier per re-view level (not in the state / viewed before / carted or faved
  before) matched to the train rates, renormalized.
* **P(leave)** after a step: the logged hazard of the session ending at each session position, plus
  `no_click_leave` when the user ignores the whole list.

`probabilities` returns [B, K, 4]: P(the user's next event is on item k with behaviour b), so the four
behaviours are exclusive like one logged event and sum to P(act on k). `sample` lets the user act on at most
one item per step: item k is chosen with its probability when the list's total is at most 1, otherwise in
proportion to it. The order of the list does not matter (the logs hold no lists to fit a position bias).

The package: `model` (the UserSimulator: response, behaviour and leaving), `fit` (fitting it on the
train split) and `calibration` (its calibration on held-out events: deciles, AUC, the table and plot).
"""

from __future__ import annotations

from drlrec.rl.simulator.calibration import (  # noqa: F401
    _deciles,
    calibrate,
    calibration_markdown,
    plot_calibration,
    simulator_calibration,
)
from drlrec.rl.simulator.fit import (  # noqa: F401
    _fit_interaction_net,
    _smoothed,
    check_config,
    fit_behavior_model,
    fit_leave_hazard,
    fit_simulator,
    fit_simulator_from_features,
)
from drlrec.rl.simulator.model import (  # noqa: F401
    CALIBRATION_TARGETS,
    FORMAT,
    INTERACTION_FEATURES,
    REPEAT_LEVELS,
    CalibrationResult,
    Response,
    SimulatorOutput,
    UserSimulator,
    _InteractionNet,
    _torch,
    _torch_threads,
    _uniform_negatives,
    repeat_level,
)
