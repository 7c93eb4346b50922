"""serve.exploration: the shown lists follow the distribution the logged propensities claim, and those
propensities make the OPE estimators recover a greedy policy's CTR from exploration logs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from drlrec.serving.exploration import check, describe, explore, slot_marginals


def cfg(mode: str, **kw) -> SimpleNamespace:
    base = {"mode": mode, "epsilon": 0.2, "top_m": 8, "temperature": 0.5, "mc_samples": 4000}
    return SimpleNamespace(**{**base, **kw})


SCORES = np.array([3.0, 2.6, 2.5, 1.9, 1.2, 1.0, 0.4, 0.1])
K = 3


def empirical(mode_cfg: SimpleNamespace, draws: int, seed: int = 0) -> tuple[np.ndarray, list]:
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(SCORES), K))
    choices = []
    for _ in range(draws):
        choice = explore(SCORES, K, mode_cfg, rng)
        counts[choice.positions, np.arange(K)] += 1
        choices.append(choice)
    return counts / draws, choices


def test_off_is_the_greedy_list_with_propensity_one() -> None:
    choice = explore(SCORES, K, cfg("off"), np.random.default_rng(0))
    assert choice.positions.tolist() == [0, 1, 2] and choice.propensity.tolist() == [1.0, 1.0, 1.0]
    assert describe(cfg("off")) == "off"


def test_epsilon_draws_match_their_exact_slot_marginals_and_the_logged_propensities() -> None:
    c = cfg("epsilon")
    marginals = slot_marginals(SCORES, K, c)
    np.testing.assert_allclose(marginals.sum(axis=0), 1.0)
    assert marginals[0, 0] == pytest.approx(0.8) and marginals[5, 2] == pytest.approx(0.2 / 5)
    assert marginals[1, 0] == 0.0  # another slot's greedy item never shows here
    freq, choices = empirical(c, 20000)
    np.testing.assert_allclose(freq, marginals, atol=0.012)
    for choice in choices[:200]:
        assert len(set(choice.positions.tolist())) == K  # no item twice
        np.testing.assert_allclose(choice.propensity, marginals[choice.positions, np.arange(K)])
    assert describe(c) == "epsilon:0.2:m8"


def test_boltzmann_propensities_are_the_frequencies_of_the_draws() -> None:
    c = cfg("boltzmann", mc_samples=2000)
    marginals = slot_marginals(SCORES, K, c)
    softmax = np.exp(SCORES / 0.5) / np.exp(SCORES / 0.5).sum()
    np.testing.assert_allclose(marginals[:, 0], softmax, atol=0.02)  # slot 0 of Plackett-Luce is the softmax
    freq, choices = empirical(c, 3000, seed=1)
    np.testing.assert_allclose(freq, marginals, atol=0.03)
    logged = [(ch.positions[j], j, ch.propensity[j]) for ch in choices[:300] for j in range(K)]
    np.testing.assert_allclose([p for *_, p in logged], [freq[a, j] for a, j, _ in logged], atol=0.035)
    assert all(p > 0 for *_, p in logged)
    np.testing.assert_array_equal(slot_marginals(SCORES, K, c), marginals)  # seeded by the scores


@pytest.mark.parametrize("mode", ["epsilon", "boltzmann"])
def test_ips_on_exploration_logs_recovers_the_greedy_lists_ctr(mode: str) -> None:
    """A slate bandit: per-position click probability depends on the item's rank and the slot; the
    service explores with `mode`; IPS and DR of the greedy list, with its target probabilities from
    slot_marginals(off), cover the true greedy CTR."""
    from drlrec.ope import BootstrapConfig, ImpressionLog, estimate_all

    c = cfg(mode)
    rng = np.random.default_rng(7)
    ctr = np.linspace(0.30, 0.02, len(SCORES))[:, None] * np.array([1.0, 0.7, 0.5])[None, :]  # [M, K]
    truth = float(np.mean([ctr[j, j] for j in range(K)]))  # greedy shows rank j at slot j
    users, rows = 400 if mode == "boltzmann" else 600, []
    for user in range(users):
        for _ in range(3):
            choice = explore(SCORES, K, c, rng)
            clicks = rng.random(K) < ctr[choice.positions, np.arange(K)]
            for j in range(K):
                rows.append((user, j, float(clicks[j]), choice.propensity[j], float(choice.positions[j] == j)))
    group, slot, reward, pscore, target = (np.array(col) for col in zip(*rows, strict=True))
    log = ImpressionLog(group=group.astype(np.int64), slot=slot.astype(np.int64), reward=reward, pscore=pscore,
                        target_prob=target)
    estimates = estimate_all(log, BootstrapConfig(n_boot=300, seed=3))

    def within_4_se(estimate, value: float) -> bool:  # a fixed seed's draw: 4 bootstrap standard errors
        return abs(estimate.value - value) <= 4 * (estimate.ci_high - estimate.ci_low) / 3.92

    assert within_4_se(estimates["ips"], truth) and abs(estimates["ips"].value - truth) < 0.03, (estimates["ips"], truth)
    logging_truth = float(np.mean((slot_marginals(SCORES, K, c) * ctr).sum(axis=0)))
    assert within_4_se(estimates["observed"], logging_truth), (estimates["observed"], logging_truth)
    assert logging_truth < truth  # exploring costs clicks: the greedy list's value is above the logged one


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"mode": "greedy"}, "not one of"), ({"epsilon": 1.5}, "not in"), ({"top_m": 1}, "at least 2"),
     ({"mode": "boltzmann", "temperature": 0.0}, "must be > 0")],
)
def test_bad_settings_are_one_line_errors(changes: dict, message: str) -> None:
    from drlrec.config import ExplorationConfig
    from drlrec.errors import ConfigError

    bad = cfg(changes.pop("mode", "epsilon"), **changes)
    with pytest.raises(ConfigError, match=message) as err:
        check(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=message):  # params.yaml's serve.exploration is checked when loaded
        ExplorationConfig(**vars(bad))


@pytest.mark.parametrize("mode", ["off", "epsilon", "boltzmann"])
def test_list_probability_is_a_distribution_over_ordered_lists_and_the_draws_follow_it(mode: str) -> None:
    from itertools import permutations

    from drlrec.serving.exploration import list_probability

    scores, k = SCORES[:6], 2
    c = cfg(mode, top_m=6, mc_samples=200)  # the slot propensities are not what this test checks
    lists = [np.array(p) for p in permutations(range(6), k)]
    probs = np.array([list_probability(scores, p, c) for p in lists])
    assert probs.sum() == pytest.approx(1.0) and (probs >= 0).all()
    if mode == "epsilon":  # both kept, one replaced (4 pool items), both replaced (4 x 3 ordered draws)
        assert list_probability(scores, np.array([0, 1]), c) == pytest.approx(0.8**2)
        assert list_probability(scores, np.array([0, 4]), c) == pytest.approx(0.8 * 0.2 / 4)
        assert list_probability(scores, np.array([5, 2]), c) == pytest.approx(0.2**2 / (4 * 3))
        assert list_probability(scores, np.array([1, 0]), c) == 0.0  # a greedy item at another slot
    rng = np.random.default_rng(11)
    draws = [explore(scores, k, c, rng) for _ in range(6000)]
    seen = {}
    for d in draws:
        seen[tuple(d.positions.tolist())] = seen.get(tuple(d.positions.tolist()), 0) + 1
        assert d.list_propensity == pytest.approx(list_probability(scores, d.positions, c))
    for key, count in seen.items():
        assert count / 6000 == pytest.approx(list_probability(scores, np.array(key), c), abs=0.02)


@pytest.mark.parametrize("mode", ["off", "epsilon", "boltzmann"])
def test_parse_reads_back_what_describe_writes(mode: str) -> None:
    from drlrec.serving.exploration import parse

    c = cfg(mode, epsilon=0.25, top_m=40, temperature=0.5)
    back = parse(describe(c))
    assert describe(back) == describe(c) and back.mode == mode
