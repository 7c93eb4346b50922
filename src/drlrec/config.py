"""Typed, frozen configuration loaded from params.yaml: one dataclass per section, a docstring per field.

Loading has no side effects: nothing is created, no URI is set. Overrides use the CLI's
`--set section.key=value` syntax; values are parsed as YAML, so `--set synth.users=500` is an int.
A params file with a top-level `extends: params.yaml` is an overlay on that file (`read_params_yaml`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from drlrec.errors import ConfigError

# Tianchi UserBehavior nominal window: [2017-11-25 00:00, 2017-12-04 00:00) in UTC+8.
TAOBAO_WINDOW_START = 1511539200
TAOBAO_WINDOW_END = 1512316800


@dataclass(frozen=True)
class BaseConfig:
    """Settings shared by every stage."""

    seed: int = 42
    """Global random seed; every stage derives its generators from it."""
    progress: bool = True
    """Show progress bars on long work (they go to stderr and are hidden when it is not a terminal)."""


@dataclass(frozen=True)
class PathsConfig:
    """Every path the pipeline reads or writes, declared once (dvc.yaml reads them as ${paths.*})."""

    raw_data: str = "data/UserBehavior.csv"
    """The raw behaviour log (header-less Taobao CSV, plain or .gz); data/ is tracked by data.dvc."""
    artifacts: str = "artifacts"
    """Folder for every stage output (never under data/)."""
    events: str = "artifacts/events.parquet"
    """Typed, validated events written by ingest, sorted by user then time."""
    quarantine: str = "artifacts/quarantine.parquet"
    """Rows rejected by ingest, each with its line number, reason and raw bytes."""
    ingest_report: str = "artifacts/ingest_report.json"
    """Ingest counts: rows read, kept, quarantined, and quarantined by reason."""
    validation: str = "artifacts/validation.json"
    """Great Expectations result for events.parquet: success and the failed expectations."""
    expectations: str = "expectations/events_suite.json"
    """The Great Expectations suite, versioned with the code."""
    features: str = "artifacts/features"
    """Folder written by featurize: train/valid/test.npz transitions, vocabularies, train statistics and
    featurize_report.json."""
    model: str = "artifacts/model"
    """Folder written by train: model.pt (weights + architecture), meta.json, training curves."""
    train_metrics: str = "artifacts/train_metrics.json"
    """Training summary and final validation metrics (a DVC metrics file)."""
    checkpoints: str = "artifacts/checkpoints"
    """Training checkpoints (not a DVC output): a killed `drlrec train` resumes from the last one."""
    metrics: str = "artifacts/metrics.json"
    """Test-period metrics of the evaluated model with 95% CIs and the protocol (the DVC metrics file)."""
    reports: str = "artifacts/reports"
    """Human-readable evaluation outputs: markdown tables and bar charts (evaluate and compare)."""
    compare: str = "artifacts/compare.json"
    """`drlrec compare`: every model's metrics on the same split, with the protocol."""
    simulator: str = "artifacts/simulator"
    """`drlrec simulate`: the fitted user simulator, its calibration against the held-out log and the
    simulated returns of reference policies."""
    bundle: str = "artifacts/bundle"
    """`drlrec register`: the model bundle (network + vocabularies + statistics) that was registered."""
    registry: str = "artifacts/registry.json"
    """`drlrec register`: the gate's decision for the newest version (version, both metrics, promoted?)."""
    monitoring: str = "artifacts/monitoring"
    """`drlrec monitor`: one folder per monitored window (report.html, report.json, decision.txt) and the
    monitoring flow's state.json (debounce)."""
    interactions: str = "artifacts/interactions.csv"
    """The serving API's durable interaction log: every acknowledged POST /interaction, one header-less
    row in the raw data's schema (user_id,item_id,category_id,behavior_type,timestamp), fsynced before
    the 202; `drlrec ingest --input` reads it as it reads the raw log."""
    exposures: str = "artifacts/exposures.csv"
    """The serving API's exposure log (A/B tests): one row per served list with its variant, alias, model
    version, fallback and the raw item ids shown."""
    ab_report: str = "artifacts/ab_report.json"
    """`drlrec ab report`: per-variant CTR and conversion with CIs, z-tests against the control and the
    sample-ratio-mismatch check."""
    ab_predictions: str = "artifacts/ab_predictions.json"
    """`drlrec ab predict`: OPE's prediction of each arm's CTR and conversion from the logs before the test
    (the A/B report shows them beside the observed values)."""
    partitions: str = "artifacts/partitions"
    """Working folder of the partitioned ingest and featurize (scale.partitions > 1): per-partition files,
    removed when the combined outputs are written. Must be shared storage for a remote Dask cluster."""
    tune: str = "artifacts/tune"
    """`drlrec tune`: one Optuna study per model in <tune>/<model>.db (SQLite, so a study resumes) and the
    trials table with the best values in <tune>/<model>.json."""


@dataclass(frozen=True)
class SynthConfig:
    """The calibrated Taobao-like log generator (`drlrec synth`).

    Defaults: the published figures of the full Taobao file where there are some (events per user,
    behaviour mix, window); the rest fitted on the real head slice (`drlrec synth --calibrate`), except
    the funnel, which is set stronger than in that slice so the generated log has a learnable signal.
    """

    users: int = 2000
    """Number of users to generate (user ids 1..users)."""
    items: int = 60000
    """Size of the item catalogue the generator draws from."""
    categories: int = 1500
    """Number of categories; every item belongs to exactly one, and popular categories hold more items."""
    start: int = TAOBAO_WINDOW_START
    """First second of the generated window (Unix seconds)."""
    days: int = 9
    """Length of the generated window in days; every timestamp is in [start, start + days * 86400)."""
    events_median: float = 75.0
    """Target median events per user (the full Taobao file: about 75)."""
    events_mean: float = 101.0
    """Target mean events per user (the full Taobao file: about 101); mean > median gives the long tail."""
    events_max: int = 5000
    """Hard cap on events for a single user."""
    behavior_mix: tuple[float, float, float, float] = (0.896, 0.055, 0.029, 0.020)
    """Target share of pv, cart, fav, buy."""
    item_zipf: float = 0.3
    """Zipf exponent of item popularity inside a category (popular categories already skew items)."""
    category_zipf: float = 1.0
    """Zipf exponent of category popularity."""
    preferred_categories: int = 4
    """How many preferred categories each user has (the first is the strongest)."""
    preference_strength: float = 0.45
    """Probability that a freshly picked event falls in one of the user's preferred categories."""
    preference_drift: float = 0.5
    """Probability per user and day that one preferred category is replaced by another."""
    category_stickiness: float = 0.6
    """Probability that an event inside a session stays in the previous event's category."""
    session_gap: int = 1800
    """Seconds of inactivity that end a session (30 minutes); generated sessions are apart by more."""
    session_events_mean: float = 6.3
    """Mean number of events in a session (each user has their own mean around it)."""
    event_gap_median: float = 56.0
    """Median seconds between consecutive events inside a session."""
    review_rate: float = 0.18
    """Probability that a pv re-views an item the user already viewed (chance repeats of popular items
    come on top, so the measured re-view rate is a little higher)."""
    buy_after_view: float = 0.9
    """Share of buys made on an item the user viewed (or carted) earlier: the funnel."""
    buy_via_cart: float = 0.3
    """Share of those funnel buys made on an item the user carted earlier, when there is one."""
    cart_after_view: float = 0.8
    """Share of carts made on an item the user viewed earlier."""
    fav_after_view: float = 0.8
    """Share of favs made on an item the user viewed earlier."""
    order: Literal["user", "original", "time"] = "user"
    """Row order of the written file: `user` (user id, then time: as events.parquet holds them), `original`
    (the real file's order: users in lexicographic string order of their ids, time within a user) or
    `time` (the whole log by time, users interleaved, as a live stream arrives)."""


@dataclass(frozen=True)
class IngestConfig:
    """Streaming CSV -> typed Parquet with quarantine (`drlrec ingest`)."""

    format: Literal["taobao", "diginetica"] = "taobao"
    """Raw log format: `taobao` (UserBehavior: user_id,item_id,category_id,behavior_type,timestamp) or
    `diginetica` (CIKM Cup 2016 train-item-views.csv: `;`-separated, header
    sessionId;userId;itemId;timeframe;eventdate or session_id;user_id;...; sessions become users, every row
    a pv, category_id 0, timestamp = eventdate 00:00 UTC + timeframe ms // 1000; see drlrec.data.ingest)."""
    window_start: int = TAOBAO_WINDOW_START
    """First valid timestamp (inclusive), Unix seconds. Default 2017-11-25 00:00 UTC+8."""
    window_end: int = TAOBAO_WINDOW_END
    """End of the valid window (exclusive), Unix seconds. Default 2017-12-04 00:00 UTC+8."""
    block_size_mb: int = 8
    """Bytes of CSV parsed per Arrow record batch. Peak memory scales with this, since Arrow also reads
    blocks ahead of the parser (bench/bench_ingest.py prints peak RSS by file size)."""
    bucket_rows: int = 4_000_000
    """Most rows sorted in memory at once; larger inputs are range-partitioned by user on disk first."""
    compression: str = "zstd"
    """Parquet compression codec for events.parquet."""


@dataclass(frozen=True)
class ValidateConfig:
    """Great Expectations validation of events.parquet (`drlrec validate`)."""

    sample_rows: int = 1_000_000
    """Rows given to the GX batch at once; bigger files are checked batch by batch."""
    max_id: int = 2**62
    """Largest id accepted for users, items and categories."""
    behavior_share_bounds: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "pv": (0.70, 0.97),
            "cart": (0.01, 0.15),
            "fav": (0.005, 0.10),
            "buy": (0.002, 0.08),
        }
    )
    """Accepted [low, high] share of each behaviour in the whole file."""
    events_per_user_median: tuple[float, float] = (1.0, 2000.0)
    """Accepted range of the median number of events per user."""


@dataclass(frozen=True)
class FeaturizeConfig:
    """Temporal split, vocabularies, sessions, profiles, step encodings and transitions (`drlrec featurize`).

    Split boundaries count whole days from ingest.window_start (passed to the core function, not read here).
    """

    train_days: int = 7
    """Days of the train period, from the window start (Taobao: 2017-11-25 .. 12-01)."""
    valid_days: int = 1
    """Days of the validation period right after train; everything later is test (Taobao: day 9)."""
    seq_len: int = 10
    """N: the previous N interactions of the user form the state (the paper: 10; 20 and 50 also work)."""
    min_count: int = 1
    """Items (and categories) with fewer train events than this map to the unknown index 1."""
    session_gap: int = 1800
    """Seconds of inactivity after which a new session starts (30 minutes)."""
    density_window: int = 10
    """Profile purchase density: buys among the user's last `density_window` events, divided by it."""
    activity_floor_days: float = 1.0
    """Profile actions per day divide by max(days since the first event, this), so a new user is not huge."""
    age_scale_days: float = 9.0
    """Profile account age is days since the user's first event divided by this (the window length)."""
    rate_smoothing: float = 10.0
    """Pseudo-views of the global rate added to every item/category conversion rate (additive smoothing)."""
    category_buckets: int = 10
    """Step feature category bucket: popularity-quantile buckets of the train categories, scaled to (0, 1]."""
    reward_weights: dict[str, float] = field(
        default_factory=lambda: {"pv": 1.0, "cart": 3.0, "fav": 2.5, "buy": 10.0}
    )
    """Business-weighted reward of the logged action by its behaviour (purchase_binary is 1 for buy)."""
    chunk_rows: int = 2_000_000
    """Events featurized at a time: groups of whole users of about this many events bound featurize's
    memory (about 300 B per event of the group). The outputs do not depend on it."""


@dataclass(frozen=True)
class ModelConfig:
    """The DQN-LSTM network (`drlrec train`); the paper's network is variant lstm with a linear head."""

    variant: Literal["lstm", "bilstm_attention"] = "lstm"
    """State encoder: `lstm` (the paper: LSTM over the state sequence) or `bilstm_attention`
    (a bidirectional LSTM followed by multi-head self-attention)."""
    head: Literal["linear", "dueling"] = "linear"
    """Q-head: `linear` (Q = state . item embedding + bias) or `dueling` (value + advantage)."""
    item_dim: int = 64
    """Item embedding size (input side)."""
    category_dim: int = 16
    """Category embedding size."""
    behavior_dim: int = 8
    """Behaviour embedding size."""
    hidden: int = 128
    """LSTM hidden size (the paper: 128)."""
    layers: int = 2
    """LSTM layers (the paper: 2)."""
    dropout: float = 0.2
    """Dropout between LSTM layers and in the FC block (the paper: 0.2)."""
    fc: tuple[int, int] = (256, 128)
    """The FC block after the encoder (the paper: 256 -> 128); the last size is the query size."""
    attention_heads: int = 4
    """Heads of the multi-head attention (bilstm_attention only)."""
    tie_item_embeddings: bool = True
    """Score items with the input item embeddings (projected to the query size) instead of a separate
    output table: half the memory for large catalogues."""
    use_step_features: bool = True
    """Feed the 20-d per-step encoding to the encoder."""
    use_profile: bool = True
    """Concatenate the 10-d user profile to the encoder output."""
    repeat_head: bool = True
    """Add a learned score for items already in the state, per position and behaviour (re-views are a
    large share of e-commerce clicks; a dot-product head alone learns them slowly)."""
    repeat_init: float = 0.0
    """Initial repeat weight of the latest slot (older slots decay by 0.8 per step); 0 = start at zero, where
    the mixture's repeat side weighs every slot alike (an item's share is its count in the state). 0 with
    `repeat_factors` was best on validation on both the default data and the real head slice (README)."""
    repeat_mode: Literal["additive", "mixture"] = "mixture"
    """How the supervised head uses the state's own items: `additive` (the repeat weight is added to each
    state item's logit) or `mixture` (RepeatNet, Ren et al. 2019: p(i) = P(repeat) P(i | repeat) +
    P(explore) P(i | explore), where the repeat distribution covers only the state's items and a learned
    gate picks the mode per state). The Q-head always uses the additive term."""
    repeat_factors: bool = True
    """Add shared factors to each head's repeat weights: weight(p, b) = table[p, b] + slope * age(p) +
    offset[b], with the age slope and the five behaviour offsets learned from every repeat target at once
    (they start at 0, so a new model scores as without them). The [position, behaviour] table alone learns
    each cell only from the targets found at that cell, which a long state (`featurize.seq_len` 50) spreads
    thin; the factors let the recency and behaviour weighting that `recent_items` is tuned for be learned
    from a small log."""
    encoder_window: int = 0
    """The encoder reads only the state's last `encoder_window` interactions (0 = the whole state), while
    the repeat terms (additive and mixture) still cover all `featurize.seq_len` of them. A long state then
    lets the copy path reach items seen 50 interactions ago at the encoder cost of a short one."""

    def __post_init__(self) -> None:
        if self.encoder_window < 0:
            raise ConfigError(f"model.encoder_window must be >= 0 (0 = the whole state), got {self.encoder_window}")


@dataclass(frozen=True)
class TrainConfig:
    """Learning for the DQN-LSTM (`drlrec train`): Double DQN with a target network, Huber loss,
    prioritized replay and an optional supervised next-item head (SQN)."""

    mode: Literal["offline", "online"] = "offline"
    """`offline`: learn from the logged transitions; `online`: episodes against SimulatedEnv."""
    steps: int = 1500
    """Gradient steps (offline mode)."""
    batch_size: int = 256
    """Transitions per gradient step."""
    lr: float = 0.001
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam weight decay (the dense parameters only when `item_optimizer` is row-wise)."""
    item_optimizer: Literal["adam", "sparse_adam", "row_adagrad"] = "adam"
    """How the item table learns (drlrec.rl.optim): `adam`, one dense Adam over every parameter (its item
    gradient and moments are dense [n_items, d] tensors, read and written every step); `sparse_adam`
    (sparse gradients, only the batch's rows updated; moments dense, memory 3x the table) or
    `row_adagrad` (sparse gradients, one accumulator per row: memory about 1x the table), for catalogues of
    millions of items. The other parameters keep dense Adam."""
    item_lr: float = 0.0
    """Learning rate of the row-wise item optimizer (0 = `lr`; row-wise Adagrad wants a larger one)."""
    gamma: float = 0.5
    """Discount factor. SQN's 0.5: with 0.99 the values grow to about r / (1 - gamma), and the reward
    differences that rank items drown in that scale (the Q-head then ranks at chance)."""
    n_step: int = 1
    """n-step returns: the target bootstraps from the state n interactions later."""
    target_update: Literal["hard", "soft"] = "hard"
    """`hard`: copy the online network every `target_update_every` steps; `soft`: Polyak with `tau`."""
    target_update_every: int = 500
    """Steps between hard target updates (C)."""
    tau: float = 0.005
    """Polyak coefficient for soft target updates."""
    huber_delta: float = 1.0
    """Huber loss threshold."""
    max_grad_norm: float = 10.0
    """Gradient clipping (global L2 norm)."""
    ce_weight: float = 1.0
    """Weight of the supervised next-item cross-entropy head (SQN); 0 gives the paper's pure DQN."""
    candidates: int = 1024
    """Items scored per update: the batch's logged actions plus this many uniform samples, shared by the
    batch (a sampled softmax for the CE head, a sampled argmax for the Double-DQN target). Keeps an
    update O(candidates) instead of O(n_items), which a 4M-item catalogue needs. 0 = full catalogue."""
    q_negative_weight: float = 1.0
    """Negative-sampling Q-learning (SNQN): every scored candidate the logged user did not take is a
    transition with reward 0 that leaves the state unchanged (target gamma * max Q(s, .)), with this weight
    on its Huber loss. 0 = TD on the logged actions only (the Q-head then never learns to rank the rest)."""
    td_item_grad: bool = True
    """Whether the TD loss's gradient reaches the item vectors that the Q-head shares with the CE head
    (false: the TD loss trains the encoder, the Q biases and the repeat weights only)."""
    negative_target: Literal["online", "target"] = "online"
    """Where the negative transitions' target gamma * max Q(s, .) comes from: `online`, the online network's
    own detached estimate (no extra LSTM pass), or `target`, the target network's value of the online
    network's best candidate (Double DQN, as for the logged actions; one more forward pass per update).
    `online` bootstraps from the network being trained; with td_item_grad its targets move with every update
    and some settings diverge (README, the head slice's DQN-LSTM study)."""
    cold_item_rate: float = -1.0
    """Share of each training batch's distinct items made cold (mapped to the unknown item, index 1, in
    states, next states and actions alike), so the unknown vector is trained and the heads learn how much
    next-item mass goes to items no model can name: without it no train event maps to unknown
    (min_count 1), while on real logs most later items are cold. Negative = the share of validation next
    items that are unknown (measured on validation, never on test); in online mode negative = 0 (the
    simulator shows train-vocabulary items only)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this in the TD target (SQN's reward scale)."""
    prioritized: bool = True
    """Proportional prioritized replay; false samples uniformly."""
    per_alpha: float = 0.6
    """Priority exponent alpha."""
    per_beta_start: float = 0.4
    """Importance-sampling exponent at the first step, annealed linearly to `per_beta_end`."""
    per_beta_end: float = 1.0
    """Importance-sampling exponent at the last step."""
    per_eps: float = 0.001
    """Added to |TD error| so that no transition gets zero priority."""
    epsilon_start: float = 0.9
    """Exploration rate at the start of the schedule."""
    epsilon_end: float = 0.1
    """Exploration rate at the end of the schedule."""
    epsilon_decay_fraction: float = 0.5
    """Share of training over which epsilon decays linearly from start to end."""
    reward: Literal["purchase_binary", "business_weighted"] = "business_weighted"
    """Reward used for the TD target: the paper's purchase indicator or the business-weighted one."""
    eval_every: int = 250
    """Steps between validation evaluations (NDCG@10 of the next item, full ranking)."""
    log_every: int = 100
    """Steps (online: rounds of online_envs episodes) between progress lines (loss, last validation figure, ETA) in a Prefect run's
    log, or on stderr when it is not a terminal (drlrec.progress); 0 = none. Does not change training."""
    eval_max_events: int = 5000
    """Validation events used for early stopping (a fixed, seeded subset when there are more)."""
    patience: int = 4
    """Early stopping: evaluations without improvement of the validation metric before stopping."""
    checkpoint_every: int = 250
    """Steps between checkpoints; a restarted run resumes from the last one."""
    device: str = "auto"
    """`auto` (CUDA when present, else CPU), `cpu` or `cuda[:N]`."""
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU)."""
    threads: int = 2
    """torch CPU threads."""
    episodes: int = 4096
    """Online mode: episodes against SimulatedEnv."""
    episode_max_steps: int = 20
    """Online mode: step limit per episode."""
    online_buffer: int = 50000
    """Online mode: replay buffer capacity."""
    online_warmup: int = 1024
    """Online mode: transitions collected before the first update."""
    online_updates_per_step: int = 4
    """Online mode: gradient steps per environment step."""
    online_envs: int = 256
    """Online mode: simulated sessions that run side by side (one batched forward pass per step)."""
    online_eval_every: int = 2
    """Online mode: rounds of `online_envs` episodes between greedy evaluations (epsilon 0, fixed sessions)."""
    online_eval_sessions: int = 256
    """Online mode: simulated sessions per greedy evaluation (the same seeded sessions every time)."""
    online_explore_history: float = 0.5
    """Online mode: share of exploration items drawn from the user's own recent items (the rest uniformly
    from the catalogue); 0 = the textbook uniform epsilon-greedy."""


@dataclass(frozen=True)
class EvaluateConfig:
    """The one evaluation protocol for every model (`drlrec evaluate`, `drlrec compare`): full ranking on the
    test period, bootstrap CIs (see drlrec.evaluate.PROTOCOL)."""

    ks: tuple[int, ...] = (5, 10, 20, 50)
    """Cut-offs k of HR@k, NDCG@k and the per-user Precision/Recall/F1/MAP@k."""
    list_k: int = 10
    """Length of the lists behind catalogue coverage, intra-list diversity and novelty."""
    exclude_bought: bool = False
    """Mask the items the user bought before each test event (a bought target then counts as a miss)."""
    max_events: int = 50000
    """Test events ranked per target (a seeded sample when there are more; 0 = all), and users behind the
    per-user purchase metrics (a seeded sample of the test buyers above it). Full ranking costs
    O(events x items): the real 100M-row file needs a cap."""
    bootstrap: int = 1000
    """Bootstrap resamples for the 95% CIs (0 = no CI)."""
    ci: float = 0.95
    """Confidence level of the intervals."""
    batch_size: int = 512
    """States scored at once (memory: batch_size x min(n_items, item_block) floats)."""
    item_block: int = 262144
    """Items scored at once: a larger catalogue is ranked block by block (exact ranks, a running top-k), so
    memory is bounded by the block, not the catalogue; 0 = the whole catalogue at once."""
    models: tuple[str, ...] = ("popularity", "recent_popularity", "item_knn", "recent_items", "session_knn", "tabular_q",
                               "gru4rec", "sasrec", "drr", "dqn_lstm")
    """Models `drlrec compare` trains and evaluates, in table order (dqn_lstm gives two rows, one per scoring
    head: dqn_lstm[q] and dqn_lstm[ce])."""
    reference: str = "auto"
    """The row `drlrec compare` reports paired differences against: a row name (e.g. `item_knn`,
    `dqn_lstm[ce]`), or `auto` = the model with the best validation NDCG@10 among those whose name does not
    start with `dqn_lstm` (the best baseline)."""
    valid_max_events: int = 50000
    """Validation events (one seeded sample, the same for every model; 0 = all) behind compare's
    `valid NDCG@10` column and the `auto` reference."""


@dataclass(frozen=True)
class RecentPopularityConfig:
    """Popularity over the end of the train period only (`recent_popularity`)."""

    recent_days: float = 1.0
    """Count only train events of the last `recent_days` days of the train period."""


@dataclass(frozen=True)
class ItemKNNConfig:
    """Session-based item-to-item co-occurrence kNN (`item_knn`)."""

    neighbours: int = 18
    """Most similar items kept per item (bounds memory at n_items x neighbours)."""
    window: int = 7
    """Two events of one session co-occur when at most this many positions apart; a pair at distance d
    counts 1/d."""
    recency_decay: float = 0.955711
    """Weight of a state item `a` interactions before the latest one: recency_decay ** a."""
    self_weight: float = 1.3368
    """Score added to an item for its own (recency-weighted) presence in the state: re-views are common."""
    popularity_prior: float = 0.0461499
    """Weight of the normalized train popularity added to every score (orders items with no neighbours)."""


@dataclass(frozen=True)
class RecentItemsConfig:
    """No-learning "recent items" heuristic: the state's own items, recency-weighted (`recent_items`)."""

    decay: float = 1.0
    """Weight of a state position `a` interactions before the latest one: decay ** a (age 0 = the latest);
    an item's score sums its positions. In (0, 1]; 1 = count the item's positions, ties broken by the
    popularity term (best on validation of both the default data and the real head slice)."""
    behavior_weights: dict[str, float] = field(
        default_factory=lambda: {"pv": 1.0, "cart": 1.0, "fav": 1.0, "buy": 1.0}
    )
    """Factor on a state position by its behaviour (pv, cart, fav, buy; a missing one counts 1; >= 0)."""
    popularity_prior: float = 0.01
    """Tie-breaker: train popularity scaled so the most popular item adds this fraction of the smallest
    possible state-item score; in [0, 1), so it fills the list but never lifts an item above a state
    item. 0 = off."""


@dataclass(frozen=True)
class SessionKNNConfig:
    """V-SKNN session kNN (Ludewig & Jannach 2018; Ludewig et al. 2021) over the train sessions (`session_knn`)."""

    k: int = 53
    """Neighbour sessions kept per state: the most similar among the sampled candidates."""
    sample_size: int = 4015
    """Candidate sessions per state: the most recent train sessions that share an item with the state;
    0 = all of them."""
    weighting: Literal["linear", "div", "quadratic", "log", "same"] = "div"
    """Weight of a state position by its position i = 1..n (oldest first, n non-padding positions):
    linear max(1 - 0.1 (n - i), 0), div i / n, quadratic (i / n) ** 2, log 1 / log10(n - i + 1.7),
    same 1. A repeated item takes the weight of its latest position."""
    normalization: Literal["dot", "cosine"] = "cosine"
    """Similarity of the weighted state to a binary train session: dot = the sum of the weights of the
    state items in the session; cosine = that sum / (|state weights| * sqrt(items in the session))."""
    score_weighting: Literal["same", "div", "linear", "quadratic", "log"] = "same"
    """Factor on a neighbour's similarity by step s, 1 + the age of the most recent state item that the
    neighbour contains (session-rec's `weighting_score`): same 1, div 1 / s, linear max(1 - 0.1 s, 0),
    quadratic 1 / s ** 2, log 1 / log10(s + 1.7)."""
    idf_weighting: float = 0.442821
    """score(item) sums similarity * (1 + idf_weighting * idf(item)), idf = log(train sessions /
    sessions holding the item); 0 = off."""
    popularity_prior: float = 0.01
    """Tie-breaker: train popularity scaled to this fraction of the row's smallest positive kNN score, so it
    fills the list (states without neighbours) but never lifts an item above a scored one; in [0, 1)."""


@dataclass(frozen=True)
class GRU4RecConfig:
    """GRU4Rec (Hidasi & Czapp 2023 style) with category and behaviour inputs and a category output term (`gru4rec`).

    Trained on whole user sequences, every position supervised (drlrec.models.sequence_fit)."""

    item_dim: int = 32
    """Item embedding size (input side)."""
    category_dim: int = 16
    """Category embedding size (input side)."""
    behavior_dim: int = 8
    """Behaviour embedding size."""
    hidden: int = 128
    """GRU hidden size, also the size of the item and category output vectors."""
    dropout: float = 0.0801745
    """Dropout on the GRU inputs (the embeddings)."""
    hidden_dropout: float = 0.495801
    """Dropout on the GRU outputs, before the output layer."""
    max_len: int = 50
    """Training chunk length: each user's train sequence is cut into chunks of max_len + 1 events."""
    max_epochs: int = 10
    """Budget: passes over all training chunks."""
    batch_size: int = 32
    """Chunks per gradient step (each contributes up to max_len next-item targets)."""
    lr: float = 0.00506224
    """Adam learning rate."""
    loss: Literal["full", "sampled"] = "full"
    """`full`: cross-entropy over every item when batch_size x max_len x n_items <= max_logits, else
    sampled; `sampled`: sampled softmax with logQ correction."""
    max_logits: int = 20_000_000
    """Cap of full cross-entropy in logits (floats) per batch; above it the loss is sampled. 20M keeps full
    softmax for catalogues up to ~6k items at batch 64 x 50; the default data's 49.5k items would need 158M
    logits (0.6 GB) per step, and SASRec's 10 epochs ran over 10 minutes inside `make run` without ending."""
    candidates: int = 4096
    """Sampled softmax: negatives per batch, shared by its positions, drawn with replacement."""
    negative_alpha: float = 0.5
    """Sampled softmax: negatives are drawn with probability ∝ train count ** negative_alpha (0 uniform,
    1 popularity); logits are corrected by log(candidates x probability)."""
    unknown_dropout: float = 0.263395
    """Share of input items replaced by UNKNOWN (index 1) in training, so unknown state items are learned."""
    eval_every: int = 1
    """Epochs between validation evaluations (NDCG@10, full ranking) for early stopping."""
    patience: int = 2
    """Epochs without improvement before stopping; the best validated weights are kept."""

    repeat_scores: bool = True
    """Add a learned score per (age, behaviour) for items already in the sequence (RepeatNet-style repeat
    term, sequence_fit.RepeatScores; not in the original model). false = the original output layer only."""
    repeat_lr_scale: float = 10.0
    """The repeat table's learning rate is lr times this: its few weights must keep pace with the growing
    scale of the network's logits."""

    def __post_init__(self) -> None:
        _check_sequence_training(self, "gru4rec")


@dataclass(frozen=True)
class SASRecConfig:
    """SASRec: causal self-attention, tied item embeddings for the output, full cross-entropy (`sasrec`).

    Trained on whole user sequences, every position supervised (drlrec.models.sequence_fit)."""

    dim: int = 32
    """Embedding and hidden size."""
    heads: int = 1
    """Attention heads per block."""
    blocks: int = 3
    """Self-attention blocks."""
    dropout: float = 0.00730458
    """Dropout on embeddings, attention and feed-forward layers."""
    max_len: int = 50
    """Training chunk length (chunks of max_len + 1 events) and the positions the positional embedding
    covers; a longer state is cut to its latest max_len interactions when scored."""
    max_epochs: int = 10
    """Budget: passes over all training chunks."""
    batch_size: int = 64
    """Chunks per gradient step (each contributes up to max_len next-item targets)."""
    lr: float = 0.00974072
    """Adam learning rate."""
    loss: Literal["full", "sampled"] = "full"
    """`full`: cross-entropy over every item when batch_size x max_len x n_items <= max_logits, else
    sampled; `sampled`: sampled softmax with logQ correction."""
    max_logits: int = 20_000_000
    """Cap of full cross-entropy in logits (floats) per batch; above it the loss is sampled. 20M keeps full
    softmax for catalogues up to ~6k items at batch 64 x 50; the default data's 49.5k items would need 158M
    logits (0.6 GB) per step, and SASRec's 10 epochs ran over 10 minutes inside `make run` without ending."""
    candidates: int = 4096
    """Sampled softmax: negatives per batch, shared by its positions, drawn with replacement."""
    negative_alpha: float = 0.5
    """Sampled softmax: negatives are drawn with probability ∝ train count ** negative_alpha (0 uniform,
    1 popularity); logits are corrected by log(candidates x probability)."""
    unknown_dropout: float = 0.188045
    """Share of input items replaced by UNKNOWN (index 1) in training, so unknown state items are learned."""
    eval_every: int = 1
    """Epochs between validation evaluations (NDCG@10, full ranking) for early stopping."""
    patience: int = 2
    """Epochs without improvement before stopping; the best validated weights are kept."""

    repeat_scores: bool = True
    """Add a learned score per (age, behaviour) for items already in the sequence (RepeatNet-style repeat
    term, sequence_fit.RepeatScores; not in the original model). false = the original output layer only."""
    repeat_lr_scale: float = 10.0
    """The repeat table's learning rate is lr times this: its few weights must keep pace with the growing
    scale of the network's logits."""

    def __post_init__(self) -> None:
        _check_sequence_training(self, "sasrec")


def _check_sequence_training(cfg: GRU4RecConfig | SASRecConfig, name: str) -> None:
    """One-line ConfigError for a sequence model's training settings that can't work."""
    for key in ("max_len", "batch_size", "candidates", "eval_every"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"baselines.{name}.{key} must be >= 1, got {getattr(cfg, key)}")
    if not 0.0 <= cfg.unknown_dropout < 1.0:
        raise ConfigError(f"baselines.{name}.unknown_dropout must be in [0, 1), got {cfg.unknown_dropout}")


@dataclass(frozen=True)
class TabularQConfig:
    """Tabular Q-learning on a coarse state: last category's popularity bucket x last behaviour (`tabular_q`)."""

    category_buckets: int = 3
    """Popularity-quantile buckets of the train categories (the state's first coordinate)."""
    gamma: float = 0.785462
    """Discount factor."""
    alpha: float = 0.950204
    """Step size of each synchronous sweep: Q <- Q + alpha (mean TD target of the (s, a) pair - Q)."""
    sweeps: int = 30
    """Synchronous Q-learning sweeps over all logged transitions."""
    reward: Literal["purchase_binary", "business_weighted"] = "business_weighted"
    """Reward of a logged transition."""


@dataclass(frozen=True)
class DRRConfig:
    """DRR actor-critic (DDPG) with the DRR-ave state representation (`drr`)."""

    dim: int = 64
    """Item embedding size = action size; the state representation is 3 x dim."""
    hidden: int = 128
    """Hidden units of the actor and critic MLPs."""
    steps: int = 1500
    """Gradient steps (offline, on the logged transitions)."""
    batch_size: int = 256
    """Transitions per step."""
    actor_lr: float = 0.00148029
    """Adam learning rate of the actor, the state representation and the item embeddings. This and the
    other DRR values below come from `drlrec tune --model drr --trials 20` (valid NDCG@10 0.0062)."""
    critic_lr: float = 0.00119557
    """Adam learning rate of the critic."""
    gamma: float = 0.555301
    """Discount factor."""
    tau: float = 0.00202628
    """Polyak coefficient of the soft target updates (actor and critic)."""
    exploration_noise: float = 0.211611
    """Std of the Gaussian noise added to the actor's action when acting (simulator training) and, clipped,
    to the target action (target policy smoothing)."""
    bc_weight: float = 28.0657
    """Weight of the behaviour-cloning term (sampled softmax of the logged item under the actor's action,
    TD3+BC style); keeps offline DDPG near the data. 0 = pure DDPG."""
    candidates: int = 2048
    """Items of the behaviour-cloning softmax: the batch's actions plus this many uniform samples."""
    reward: Literal["purchase_binary", "business_weighted"] = "business_weighted"
    """Reward of a logged transition."""
    per_alpha: float = 0.6
    """Prioritized replay exponent alpha (priorities are |TD error|)."""
    per_beta_start: float = 0.4
    """Importance-sampling exponent at the first step, annealed linearly to 1."""
    eval_every: int = 250
    """Steps between validation evaluations (NDCG@10, full ranking) for early stopping."""
    patience: int = 3
    """Evaluations without improvement before stopping; the best validated weights are kept."""


@dataclass(frozen=True)
class BaselinesConfig:
    """The comparison models behind the shared interface (drlrec.model_factory): budgets and hyper-parameters."""

    device: str = "auto"
    """Torch models: `auto` (CUDA when present, else CPU), `cpu` or `cuda[:N]`."""
    threads: int = 2
    """torch CPU threads."""
    eval_max_events: int = 2000
    """Validation events used for early stopping (a fixed, seeded subset when there are more)."""
    recent_popularity: RecentPopularityConfig = field(default_factory=RecentPopularityConfig)
    """`recent_popularity`."""
    item_knn: ItemKNNConfig = field(default_factory=ItemKNNConfig)
    """`item_knn`."""
    recent_items: RecentItemsConfig = field(default_factory=RecentItemsConfig)
    """`recent_items`."""
    session_knn: SessionKNNConfig = field(default_factory=SessionKNNConfig)
    """`session_knn`."""
    gru4rec: GRU4RecConfig = field(default_factory=GRU4RecConfig)
    """`gru4rec`."""
    sasrec: SASRecConfig = field(default_factory=SASRecConfig)
    """`sasrec`."""
    tabular_q: TabularQConfig = field(default_factory=TabularQConfig)
    """`tabular_q`."""
    drr: DRRConfig = field(default_factory=DRRConfig)
    """`drr`."""


@dataclass(frozen=True)
class SimulatorConfig:
    """The user simulator fitted on the train split (drlrec.rl.simulator): who interacts with a recommended
    item, with which behaviour, and when the user leaves."""

    factors: int = 16
    """Size of the item and category factors of the affinity model (state side and item side)."""
    negatives: int = 4
    """Catalogue items drawn uniformly per logged next item when fitting and calibrating: P(interact) is the
    probability that an item of such a candidate set is the one the user acts on."""
    epochs: int = 4
    """Passes over the train transitions (fresh negatives each pass)."""
    batch_size: int = 256
    """Transitions per gradient step."""
    lr: float = 0.01
    """Adam learning rate."""
    weight_decay: float = 0.00003
    """L2 penalty on the factors (keeps rare items near the category factors)."""
    rate_smoothing: float = 20.0
    """Pseudo-interactions of the category rate added to each item's behaviour rates given an interaction
    (and of the global rate to each category's)."""
    leave_signal: Literal["session_end", "done"] = "session_end"
    """What a logged leave is: the end of a 30-minute session, or the user's last event in the split."""
    leave_positions: int = 20
    """The leave hazard is fitted per position in the session up to this; later positions share one rate."""
    no_click_leave: float = 0.1
    """Extra probability of leaving after a list the user ignores (not in the logs: an assumption)."""
    exposure_boost: float = 1.0
    """P(act on a recommended item) = 1 - exp(-exposure_boost * P(it is the user's next event)): 1 = a list
    is acted on as often as the organic next event falls in it; more = a lift from being recommended (the
    logs hold no exposures: an assumption)."""
    calibration_max_events: int = 20000
    """Held-out transitions used for calibration (a seeded subset when there are more)."""
    threads: int = 1
    """torch CPU threads while fitting (1: the small updates gain nothing from more, and a fit is then
    bit-reproducible for a seed)."""


@dataclass(frozen=True)
class EnvConfig:
    """The gymnasium environments (drlrec.rl.envs): list length, episode limits and the reward scheme."""

    k: int = 10
    """Length of the recommended list (the action)."""
    max_steps: int = 20
    """Steps after which an episode is truncated."""
    reward: Literal["purchase_binary", "business_weighted"] = "business_weighted"
    """`purchase_binary`: 1 when a recommended item is bought; `business_weighted`: behaviour weight plus
    the long-tail and preferred-category bonuses."""
    behavior_weights: dict[str, float] = field(
        default_factory=lambda: {"pv": 1.0, "cart": 3.0, "fav": 2.5, "buy": 10.0}
    )
    """business_weighted: reward of an interaction by its behaviour."""
    long_tail_quantile: float = 0.8
    """An item is long-tail when its train count is below this quantile of the train counts of items."""
    long_tail_bonus: float = 2.0
    """business_weighted: added when the item interacted with is long-tail."""
    category_bonus: float = 2.0
    """business_weighted: added when the item's category is the user's preferred one (the most frequent
    category in the state)."""
    step_seconds: float = 60.0
    """Simulated seconds between two interactions (time-gap step feature, profile ages)."""
    start_split: Literal["train", "valid"] = "valid"
    """SimulatedEnv draws its start states from this split's logged states."""
    sessions: int = 1000
    """Sessions `drlrec simulate` runs per policy (`--sessions` overrides): the same seeded ones for all."""


@dataclass(frozen=True)
class SimulateConfig:
    """simulate: the policies `drlrec simulate` compares on the same seeded simulated sessions (env.sessions
    of them) and the bootstrap over sessions behind their confidence intervals."""

    policies: tuple[str, ...] = (
        "dqn_lstm[q]", "dqn_lstm[ce]", "recent_items", "item_knn", "sasrec", "popularity", "random"
    )
    """`dqn_lstm[q]` / `dqn_lstm[ce]`: the trained DQN-LSTM of paths.model scored with its Q-head / its
    supervised CE head (left out when there is none); `random`: uniform lists; any other model_factory name:
    fitted on the train split with its params budget (`recent_items` without a registry model: the user's
    k most recent distinct items). `drlrec simulate --policies` overrides."""
    bootstrap: int = 1000
    """Percentile-bootstrap resamples of sessions behind every CI and the paired Q - CE difference (0 = none)."""
    ci: float = 0.95
    """Confidence level of those CIs."""


@dataclass(frozen=True)
class RegisterConfig:
    """register: the MLflow Model Registry gate that decides whether a new DQN-LSTM becomes @champion."""

    model_name: str = "drlrec"
    """Registered model name in MLflow."""
    metric: str = "next_item/ndcg_at_10"
    """Gate metric, `group/metric` from the evaluate stage's metrics.json (higher is better)."""
    margin: float = 0.0
    """The challenger must beat the champion by at least this much (absolute) on the gate metric."""
    reevaluate_champion: bool = True
    """When the champion was evaluated on another split (new data), score it again on the challenger's
    split before comparing; false compares with the champion's recorded figure."""
    ope_gate: bool = False
    """Also require, before promoting over a champion, that the challenger's off-policy DR estimate from the
    service's logs (drlrec.ope_logs, paths.exposures and paths.interactions, which need serve.exploration on)
    has a lower 95% bound not below the champion's observed value minus ope_margin. No usable logs: not
    promoted, with the reason."""
    ope_margin: float = 0.0
    """How far below the champion's observed rate the challenger's DR lower bound may be (absolute)."""
    ope_reward: Literal["click", "conversion"] = "click"
    """The reward the OPE gate compares (per impression)."""


@dataclass(frozen=True)
class FlowConfig:
    """flow: the Prefect training flow and its deployment."""

    deployment: str = "drlrec-training"
    """Name of the training deployment `drlrec deploy` serves."""
    cron: str = "0 3 * * *"
    """Cron schedule of the training deployment (server time zone)."""
    timezone: str = "UTC"
    """Time zone of the cron schedule."""
    io_retries: int = 2
    """Retries of the I/O tasks (ingest, validate, register); compute tasks never retry."""
    io_retry_delay_seconds: int = 5
    """Seconds between those retries."""


@dataclass(frozen=True)
class DriftConfig:
    """drift: the shifted period `drlrec synth --drift` generates after the synth: window (tests, demo).

    The period continues the same users and catalogue (same seed) with events drawn afresh; each knob at its
    neutral value (0, 0.0, null) leaves that aspect unchanged, so all neutral gives a no-drift period."""

    days: int = 4
    """Length of the shifted period in days; it starts where the synth: window ends. Events per user scale
    with days / synth.days, so the daily activity stays the same."""
    category_shift: int = 40
    """The preferred categories move: category popularity weights rotate by this many ranks (users draw
    their preferences and fresh events from the rotated weights); 0 keeps them."""
    new_item_share: float = 0.3
    """New items arrive: this share of the catalogue gets fresh ids never seen before (in every category,
    so about this share of the events land on unknown items)."""
    behavior_mix: tuple[float, float, float, float] | None = (0.75, 0.11, 0.06, 0.08)
    """The behaviour mix of the period (pv, cart, fav, buy); null keeps synth.behavior_mix."""


@dataclass(frozen=True)
class MonitorConfig:
    """monitor: Evidently drift of live interactions against the training period, and when to retrain."""

    window_days: float = 1.0
    """The current window: the interaction log's events in its last `window_days` days (by event
    timestamp); 0 takes the whole log or batch."""
    min_rows: int = 1000
    """Fewer interactions than this in the window: no decision (reported as not enough data)."""
    top_categories: int = 20
    """The category column keeps the reference's most frequent categories; the rest become `other`."""
    num_threshold: float = 0.1
    """Drift threshold of numeric columns (normed Wasserstein distance: shift in reference std units)."""
    cat_threshold: float = 0.1
    """Drift threshold of categorical columns (Jensen-Shannon distance)."""
    drift_share: float = 0.3
    """Drift is declared when at least this share of the monitored columns drifted."""
    reference_max_rows: int = 300000
    """Reference events used (a seeded sample of the training period beyond this)."""
    quality_k: int = 10
    """Online quality is HR@k of the served lists against the user's next logged interaction."""
    quality_min_lists: int = 200
    """Fewer served lists followed by an interaction than this: online quality is not judged."""
    quality_margin: float = 0.05
    """Drift is also declared when online HR@k is below the champion's offline next-item HR@k by more
    than this (absolute)."""
    deployment: str = "drlrec-monitoring"
    """Name of the monitoring deployment (`drlrec deploy` serves it beside the training one)."""
    cron: str = "0 * * * *"
    """Cron schedule of the monitoring deployment."""
    timezone: str = "UTC"
    """Time zone of the cron schedule."""
    debounce_hours: float = 24.0
    """After a retrain, drift triggers no other retrain for this many hours, and never twice for the same
    new data (the state file keeps the last retrain time and data hash)."""
    retrain: bool = True
    """On drift, append the window to the raw data and run the training flow; false only reports."""
    dvc_add: bool = True
    """After appending, `dvc add` the raw data folder (when the project is a DVC repository)."""
    git_commit: bool = True
    """After `dvc add`, git-commit the .dvc file (when the project is a git repository)."""
    slide_window: bool = True
    """Retrain on the newest data: move ingest.window_start/window_end so the window (same length) ends
    at the last appended day; the temporal split then tests on the new period."""


@dataclass(frozen=True)
class ExplorationConfig:
    """serve.exploration: how the served list explores, with the propensity of every shown item logged
    (drlrec.serving.exploration; off-policy evaluation, drlrec.ope, needs it)."""

    mode: Literal["off", "epsilon", "boltzmann"] = "off"
    """off: the model's greedy top-k (propensity 1 per slot, and OPE refuses another policy); epsilon: each
    slot independently shows, with probability `epsilon`, a uniform item of the top-M outside the greedy
    list; boltzmann: a Plackett-Luce draw from softmax(score / temperature) over the model's top-M."""
    epsilon: float = 0.1
    """Per-slot replacement probability of mode epsilon."""
    top_m: int = 50
    """The model's top-M the exploration draws from (at least k + 1 for epsilon to explore)."""
    temperature: float = 1.0
    """Softmax temperature of mode boltzmann, in units of the served head's score."""
    mc_samples: int = 2000
    """Draws that estimate boltzmann's slot propensities (seeded by the scores: reproducible)."""

    def __post_init__(self) -> None:
        from drlrec.serving.exploration import check

        check(self)


@dataclass(frozen=True)
class AnnConfig:
    """serve.ann: the faiss index of serve.retrieval `ann` (drlrec.serving.ann), built when a model is loaded."""

    index: Literal["flat", "ivf_flat", "ivf_sq8", "hnsw"] = "ivf_flat"
    """faiss inner-product index over the served head's [item vector, bias]: flat (exhaustive: the exact
    top-k, for tests), ivf_flat / ivf_sq8 (inverted lists of float32 / 8-bit codes), hnsw (graph)."""
    nlist: int = 0
    """IVF lists; 0 = 4 sqrt(items) (at most items / 39, faiss's training minimum per list)."""
    nprobe: int = 512
    """IVF lists visited per query: more is slower and closer to the exact top-k (bench/bench_recommend.py
    sweeps it: at 4.2M items and 4,096 lists, 512 reached recall@10 0.990 on a random-weight model)."""
    hnsw_m: int = 32
    """HNSW neighbours per node."""
    ef_construction: int = 40
    """HNSW beam width while building."""
    ef_search: int = 128
    """HNSW beam width per query."""
    candidates: int = 100
    """Neighbours retrieved beyond k + the request's excluded items; all are re-scored exactly by the model."""
    lse_sample: int = 4096
    """CE mixture head: fixed uniform sample of the catalogue whose items stand in for the ones not retrieved
    in the softmax normaliser (explore_logsumexp)."""
    train_size: int = 200000
    """Items the IVF coarse quantizer is trained on (a seeded uniform sample)."""
    seed: int = 0
    """Seed of the training and normaliser samples."""
    build_threads: int = 0
    """faiss threads while building (0 = faiss's default: all cores)."""
    search_threads: int = 1
    """faiss threads per search (one request is small; 1 leaves the other cores to other requests)."""


@dataclass(frozen=True)
class ServeConfig:
    """serve: the FastAPI recommendation service (`drlrec serve`, drlrec.serving)."""

    host: str = "127.0.0.1"
    """Interface uvicorn binds (127.0.0.1: local only)."""
    port: int = 8000
    """TCP port of the API."""
    alias: str = "champion"
    """Registry alias served when the A/B test is off (ab.enabled false)."""
    poll_seconds: float = 30.0
    """Seconds between checks of the registry aliases; a moved alias is loaded beside the old model and
    swapped in atomically (POST /admin/reload checks at once). 0 turns polling off."""
    cache_ttl: int = 60
    """Seconds a user's top-k list stays cached (Redis, or the in-process LRU); 0 disables the cache."""
    max_k: int = 100
    """Largest k a client may ask for (more is a 422)."""
    default_k: int = 10
    """k when the request names none."""
    history_events: int = 50
    """Raw interactions kept per user (Redis list or in process); the state is the last featurize.seq_len
    of them and the 10-d profile is computed over all of them."""
    cold_start_min_events: int = 3
    """Users with fewer known interactions get the popularity list (fallback `cold_start`)."""
    lru_size: int = 100000
    """Users whose lists the in-process LRU cache holds (used alone without Redis, and while Redis is down)."""
    max_body_bytes: int = 16384
    """Largest request body accepted (more is a 413)."""
    redis_timeout: float = 0.05
    """Socket timeout of Redis calls in seconds; a slow Redis counts as a failure for the circuit breaker."""
    breaker_failures: int = 3
    """Consecutive Redis failures that open the circuit breaker (the service then skips Redis)."""
    breaker_reset_seconds: float = 5.0
    """Seconds the breaker stays open before one trial call checks whether Redis is back."""
    torch_threads: int = 1
    """torch intra-op threads of the inference thread."""
    max_batch: int = 32
    """Most requests scored in one forward pass: requests that arrive while the model is busy are batched
    (the item table is then read once for all of them); a lone request is scored at once."""
    log_exposures: bool = True
    """Append every served list to paths.exposures (needed by the A/B report and online monitoring)."""
    retrieval: Literal["exact", "scan", "ann"] = "scan"
    """How the model's top-k is found: scan (default: every item scored in one faiss pass over the item
    table, the mixture's repeat side for the state's items only; the same top-k as model.recommend up to
    float rounding, about twice as fast; a model without a DQN-LSTM item table is ranked exactly), exact
    (model.recommend) or ann (a faiss index, serve.ann, with the candidates re-scored exactly:
    approximate; see bench/bench_recommend.py)."""
    ann: AnnConfig = field(default_factory=AnnConfig)
    """The index of retrieval `ann`."""
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    """Exploration of the served lists, with logged propensities (off by default)."""


@dataclass(frozen=True)
class VariantConfig:
    """One arm of the A/B test."""

    name: str = "champion"
    """Variant name, as logged with every exposure and reported by `drlrec ab report`."""
    alias: str = "champion"
    """Registry alias whose model serves this variant (e.g. champion, challenger)."""
    traffic: float = 1.0
    """Share of users assigned to the variant (the shares of all variants must sum to 1)."""
    policy: Literal["model", "popularity"] = "model"
    """`model`: the alias's model ranks items; `popularity`: its train-period popularity list (a baseline arm)."""


@dataclass(frozen=True)
class ABConfig:
    """ab: the A/B test of the serving API: deterministic assignment of users to variants, and the report."""

    enabled: bool = True
    """false: every user gets serve.alias, logged as variant `serve.alias`."""
    experiment: str = "champion-vs-challenger"
    """Name of the experiment (reported; change it together with the salt for a new experiment)."""
    salt: str = "drlrec-ab-1"
    """Assignment salt: variant = bucket of sha256(salt:user_id); a new salt reshuffles every user."""
    variants: tuple[VariantConfig, ...] = (
        VariantConfig("champion", "champion", 0.5),
        VariantConfig("challenger", "challenger", 0.5),
    )
    """The arms and their traffic split; a variant whose alias cannot be loaded is served by the control."""
    control: str = "champion"
    """The variant the others are tested against (z-tests, lift)."""
    confidence: float = 0.95
    """Confidence level of the CIs and the two-sided z-tests."""
    srm_alpha: float = 0.001
    """Sample-ratio mismatch is flagged when the chi-square p-value of users per variant is below this."""


@dataclass(frozen=True)
class ScaleConfig:
    """scale: data stages on Dask (through Prefect's DaskTaskRunner) and training on torch DDP."""

    partitions: int = 1
    """User-hash partitions of ingest and featurize (flows/partitioned.py); 1 = the single pass. Any
    number gives the same events.parquet and features as the single pass."""
    dask_address: str = ""
    """Scheduler of an existing Dask cluster (e.g. tcp://10.0.0.5:8786); empty = a local cluster. Its
    workers must see paths.partitions and the inputs and outputs at the same paths (shared storage)."""
    dask_workers: int = 2
    """Workers of the local Dask cluster (ignored with dask_address)."""
    dask_threads_per_worker: int = 1
    """Threads per local worker (ignored with dask_address)."""
    dask_processes: bool = False
    """Local workers as processes (true: more memory, no GIL sharing) or threads in this process."""
    ddp_backend: Literal["auto", "gloo", "nccl"] = "auto"
    """`drlrec train --distributed` process-group backend: auto = NCCL on CUDA, gloo on CPU."""
    ddp_lr_scaling: Literal["none", "linear", "sqrt"] = "sqrt"
    """Learning rate under DDP with W processes (effective batch W * train.batch_size): train.lr times 1,
    W (the linear rule, for SGD-like optimizers) or sqrt(W) (the usual choice for Adam)."""


@dataclass(frozen=True)
class TuneConfig:
    """tune: `drlrec tune --model NAME`, an Optuna study (seeded TPE) over the model's search space in
    drlrec.tune, scored on validation NDCG@10 only; every trial fits with the model's own budget from params."""

    trials: int = 20
    """Finished trials the study should hold (`--trials` overrides); a resumed study runs only the missing ones."""
    timeout: float = 0.0
    """Stop starting new trials after this many seconds of this call (`--timeout` overrides); 0 = no limit."""
    eval_max_events: int = 5000
    """Validation events every trial is scored on: the same fixed, seeded subset for every trial and model."""
    startup_trials: int = 5
    """Trials drawn at random before TPE models the finished ones (Optuna's n_startup_trials)."""


@dataclass(frozen=True)
class Params:
    """The whole params.yaml."""

    base: BaseConfig = field(default_factory=BaseConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    featurize: FeaturizeConfig = field(default_factory=FeaturizeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    ab: ABConfig = field(default_factory=ABConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)


# ----------------------------------------------------------------------------------------------------------
# loading


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a type annotation, converting lists to tuples and ints to floats."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(annotation, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {
            _coerce(k, args[0], where): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()
        }
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}" if where else name) for name, value in data.items()}
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value` (value as YAML) into (["section", "key"], value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    dotted, raw = text.split("=", 1)
    keys = [k for k in dotted.strip().split(".") if k]
    if len(keys) < 2:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({exc.__class__.__name__})") from exc
    return keys, value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of the raw params dict with `section.key=value` overrides applied."""
    import copy

    merged = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = merged
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {key} is not a section")
        node[keys[-1]] = value
    return merged


#: Top-level key of an overlay params file: the params file it changes (relative to the overlay's folder).
EXTENDS_KEY = "extends"


def merge_params(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overlay` laid over it: mappings merge key by key, any other value (lists too) replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_params(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_params_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read params.yaml as a plain dict (missing file or bad YAML -> ConfigError).

    A file with a top-level `extends: OTHER.yaml` is an overlay: OTHER (a path relative to the overlay's
    folder, itself possibly an overlay) is read first and the overlay's keys are merged over it, so e.g.
    params/diginetica.yaml holds only what differs from params.yaml.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    if EXTENDS_KEY not in data:
        return data
    parent = data.pop(EXTENDS_KEY)
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{path}: {EXTENDS_KEY} must be the path of a params file, got {parent!r}")
    seen = (*_seen, path.resolve())
    parent_path = path.parent / parent
    if parent_path.resolve() in seen:
        raise ConfigError(f"{path}: {EXTENDS_KEY} {parent!r} forms a cycle")
    return merge_params(read_params_yaml(parent_path, seen), data)


def params_from_dict(data: dict[str, Any]) -> Params:
    """Build Params from a dict; missing sections and keys take their defaults, unknown keys are errors."""
    return _build(Params, data, "")


def load_params(path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Load params.yaml with optional `section.key=value` overrides."""
    return params_from_dict(apply_overrides(read_params_yaml(path), overrides))


def params_to_dict(params: Any) -> dict[str, Any]:
    """Plain-dict view of a config (tuples become lists), e.g. for logging to MLflow or JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) for k, v in dataclasses.asdict(params).items()}
