"""serve.retrieval scan / ann (drlrec.serving.ann) against model.recommend on a 5,000-item DQN-LSTM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drlrec.config import AnnConfig, ModelConfig
from drlrec.models.base import FIRST_REAL_ITEM, StateBatch
from drlrec.models.dqn_lstm import DQNLSTM
from drlrec.serving.ann import AnnIndex, FullScan, make_retriever, scan_table

N_ITEMS, SEQ_LEN, BATCH = 5000, 10, 12


def _model(head: str, repeat_init: float = 4.0) -> DQNLSTM:
    torch.manual_seed(0)
    model = DQNLSTM(N_ITEMS, 40, ModelConfig(repeat_init=repeat_init), score_with=head)
    with torch.no_grad():  # trained biases are not zero: the index must carry them
        model.network.q_bias.normal_(0.0, 0.5)
        model.network.ce_bias.normal_(0.0, 0.5)
    return model


def _states(seed: int = 0) -> StateBatch:
    rng = np.random.default_rng(seed)
    seq = rng.integers(FIRST_REAL_ITEM, N_ITEMS, size=(BATCH, SEQ_LEN))
    seq[:, :3] = 0  # left padding
    seq[1] = 0  # an empty state
    seq[2, -1] = 1  # an unknown item as the latest interaction
    seq[3, 5:] = seq[3, 5]  # re-views of one item
    known = seq > 0
    return StateBatch(
        seq, rng.integers(1, 40, size=seq.shape) * known, rng.integers(1, 5, size=seq.shape) * known,
        rng.standard_normal((BATCH, SEQ_LEN, 20)).astype(np.float32), rng.standard_normal((BATCH, 10)).astype(np.float32),
    )


def _exclude(states: StateBatch) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    # some random items and the latest state item (a repeat candidate) of every row
    return [np.append(rng.integers(FIRST_REAL_ITEM, N_ITEMS, size=4), states.item_seq[row, -1]) for row in range(BATCH)]


@pytest.fixture(scope="module", params=["q", "ce"])
def model(request) -> DQNLSTM:
    m = _model(request.param)
    assert request.param == "q" or m.network.mixture  # the default model: params serve the RepeatNet mixture
    return m


@pytest.mark.parametrize("retrieval", ["scan", "flat"])
def test_exhaustive_retrieval_returns_the_exact_top_k(model, retrieval):
    states = _states()
    retriever = FullScan(model) if retrieval == "scan" else AnnIndex(model, AnnConfig(index="flat"))
    # the default model ties a 64-d item embedding through a widening projection: scan reads the 64-d table
    assert scan_table(model.network, model.score_with).vectors.shape[1] == model.network.item_embedding.embedding_dim
    exact_items, exact_scores = model.recommend(states, 10)
    items, scores = retriever.recommend(states, 10)
    np.testing.assert_array_equal(items, exact_items)
    # the mixture's normaliser is estimated from the candidates plus a sample: scores differ a little
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5 if retrieval == "scan" or model.score_with == "q" else 0.02)


def test_exclusions_pad_and_unknown_are_never_returned(model):
    states = _states()
    exclude = _exclude(states)
    index = AnnIndex(model, AnnConfig(index="flat"))
    exact_items, _ = model.recommend(states, 20, exclude)
    items, _ = index.recommend(states, 20, exclude)
    np.testing.assert_array_equal(items, exact_items)
    for row in range(BATCH):
        assert not np.isin(items[row], exclude[row]).any()
    assert (items >= FIRST_REAL_ITEM).all()


def test_repeat_items_are_ranked_by_the_model():
    """With a strong repeat prior the state's items lead the exact lists; an index that only retrieves by
    inner product (the state's items are not near the query) would miss them."""
    model = _model("ce", repeat_init=8.0)
    states = _states()
    exact_items, _ = model.recommend(states, 10)
    state_hits = sum(np.isin(exact_items[row], states.item_seq[row]).sum() for row in range(BATCH))
    assert state_hits >= BATCH  # the premise: repeat items are in the exact top-10
    index = AnnIndex(model, AnnConfig(index="ivf_flat", nlist=64, nprobe=1, candidates=0))
    items, _ = index.recommend(states, 10)
    found = sum(np.isin(items[row], exact_items[row][np.isin(exact_items[row], states.item_seq[row])]).sum() for row in range(BATCH))
    assert found == state_hits


def test_ivf_recall_grows_with_nprobe(model):
    states = _states(seed=5)
    exact_items, _ = model.recommend(states, 10)
    index = AnnIndex(model, AnnConfig(index="ivf_flat", nlist=64, nprobe=1, candidates=20))
    recalls = []
    for nprobe in (1, 64):
        index.set_search(nprobe=nprobe)
        items, _ = index.recommend(states, 10)
        recalls.append(np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(items, exact_items, strict=True)]))
    assert recalls[1] == 1.0  # every list visited: exhaustive
    assert recalls[0] < recalls[1]


def test_make_retriever_defaults_to_the_model():
    model = _model("q")
    assert make_retriever(model, "exact") is model
    assert isinstance(make_retriever(model, "scan"), FullScan)


def test_scan_is_the_default_and_ranks_a_model_without_an_item_table_exactly():
    """serve.retrieval defaults to the scan; a model the scan cannot read (no DQN-LSTM item table, e.g. a
    popularity bundle) is ranked by the model itself, while ann still refuses it."""
    from drlrec.config import ServeConfig
    from drlrec.errors import ConfigError
    from drlrec.models.popularity import Popularity

    assert ServeConfig().retrieval == "scan"
    popularity = Popularity(N_ITEMS)
    assert make_retriever(popularity, "scan") is popularity
    assert isinstance(make_retriever(_model("ce"), "scan"), FullScan)
    with pytest.raises(ConfigError, match="needs a DQN-LSTM bundle"):
        make_retriever(popularity, "ann")


def test_a_model_served_under_inference_mode_still_trains_and_ranks_the_same():
    """ServingModel ranks under torch.inference_mode, which also fills the model's item-table cache with
    an inference tensor; a later training step must still take gradients through the item table (no
    inference tensor saved for backward), and ranking outside the mode gives the same lists."""
    from drlrec.models.dqn_lstm import TensorStates

    model = _model("ce")
    states = _states()
    with torch.inference_mode():
        scan_items, _ = FullScan(model).recommend(states, 10)
        model_items, _ = model.recommend(states, 10)  # fills the cached item table inside the mode
    network = model.network
    network.train()
    loss = network.ce_logits(network.encode(TensorStates(states, model.device))).logsumexp(dim=1).sum()
    loss.backward()
    assert network.item_embedding.weight.grad is not None and network.item_embedding.weight.grad.abs().sum() > 0
    network.zero_grad()
    network.eval()
    with torch.no_grad():
        np.testing.assert_array_equal(FullScan(model).recommend(states, 10)[0], scan_items)
        np.testing.assert_array_equal(model.recommend(states, 10)[0], model_items)
    np.testing.assert_array_equal(scan_items, model_items)
