"""Gymnasium environments over the logs (LogReplayEnv) and over the user simulator (SimulatedEnv), and
`simulate_policy`, which runs many sessions at once to measure CTR, conversion, return, diversity, coverage,
with bootstrap CIs over sessions; policies run with the same seed meet the same sessions, so
`paired_session_difference` compares them session by session.

Both environments share one vectorized core: `start_batch(n, rng)` opens n sessions, `batch_states` gives
their states as a StateBatch and `step_batch(handle, items [B, K], rng)` answers B lists at once. The
gymnasium `reset`/`step` are that core with B = 1, driven by the environment's own `np_random`, so a seed
fixes an episode.

Observation (one state, N = seq_len): a Dict of item_seq, category_seq, behavior_seq ([N] int64, left-padded
with 0, most recent last), step_features ([N, 20] float32) and profile ([10] float32); `obs_to_state_batch`
stacks observations into the StateBatch every model scores. Action: the recommended list, K item indices
(MultiDiscrete([n_items] * K)); padding/unknown items and repeats within a list are never acted on.

The package: `observations` (the observation space, observations <-> StateBatch), `environments` (the vectorized session core, LogReplayEnv, SimulatedEnv and their factories)
and `simulation` (simulate_policy, session bootstrap CIs, paired differences, tables, reference policies).
"""

from __future__ import annotations

from drlrec.rl.envs.environments import (  # noqa: F401
    LogReplayEnv,
    SessionBatch,
    SimulatedEnv,
    StepOutcome,
    _check_config,
    _SessionEnv,
    log_replay_env,
    simulated_env,
)
from drlrec.rl.envs.observations import (  # noqa: F401
    OBS_KEYS,
    PolicyFn,
    obs_to_state_batch,
    observation_space,
    stack_obs,
    state_to_obs,
)
from drlrec.rl.envs.simulation import (  # noqa: F401
    SESSION_METRICS,
    SessionOutcomes,
    SimulationResult,
    _check_bootstrap,
    _resampled_sums,
    _session_estimates,
    _session_rows,
    _with_ci,
    intra_list_diversity,
    model_policy,
    paired_session_difference,
    paired_verdict,
    recent_items_policy,
    session_bootstrap,
    simulate_policy,
    simulation_table,
)
