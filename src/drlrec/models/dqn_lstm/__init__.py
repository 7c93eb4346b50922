"""The DQN-LSTM: a Deep Q-Network whose state encoder is an LSTM over the user's last L interactions.

Q(s, a) = phi(s) . e_a + b_a, where phi(s) is the encoder output after the FC block and e_a an item
vector, so the Q-head scales to 10^6 items and top-k over the catalogue is one matrix product.
Variants (params `model.variant`): `lstm` (the paper: 2-layer LSTM, hidden 128, dropout 0.2,
FC 256 -> 128) and `bilstm_attention` (bidirectional LSTM + multi-head self-attention).
Heads (`model.head`): `linear`, or `dueling` (V(s) + A(s, a) - mean_a A(s, a)).
An optional supervised next-item head (the SQN recipe) shares the encoder and the item vectors.

The package: `network` (QNetwork: the encoder, the heads, the repeat/copy term) and `scorer` (DQNLSTM, the
shared Recommender interface over it: scoring by head, block-wise scores, saving and loading, and the
ScoringModule the MLflow torch flavour holds).
"""

from __future__ import annotations

from drlrec.models.dqn_lstm.network import (  # noqa: F401
    N_BEHAVIORS,
    N_PROFILE_FEATURES,
    N_STEP_FEATURES,
    Encoding,
    QNetwork,
    TensorStates,
    mask_unrecommendable,
    repeat_prior,
)
from drlrec.models.dqn_lstm.scorer import (  # noqa: F401
    DQNLSTM,
    ScoringModule,
    _NetworkBlocks,
    pack_states,
)
