"""One small featurized dataset (the real pipeline on a generated log) and a simulator fitted on it, per session."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import pytest

from drlrec.config import FeaturizeConfig, SimulatorConfig, SynthConfig
from drlrec.features.featurize import TrainGlobals, build_transitions, featurize
from drlrec.features.histories import EventHistories
from drlrec.features.transitions import save_split, split_path
from drlrec.models.base import TrainingData


class Featurized(NamedTuple):
    features_dir: Path
    data: TrainingData
    globals: TrainGlobals
    histories: EventHistories  # every user's events, for the simulated sessions
    events_path: Path  # the same events as events.parquet


@pytest.fixture(scope="session")
def featurized(tmp_path_factory: pytest.TempPathFactory) -> Featurized:
    """synth (300 users, 3,000 items) -> featurize -> train/valid .npz in a temporary folder, loaded back."""
    from drlrec.data.synth import generate

    synth = dataclasses.replace(SynthConfig(), users=300, items=3000, categories=120)
    events = generate(synth, seed=7, progress=False).to_pandas()
    result = featurize(events, FeaturizeConfig(), synth.start)
    out = tmp_path_factory.mktemp("rl_features")
    result.globals.save(out)
    for split in ("train", "valid"):
        save_split(split_path(out, split), build_transitions(result, split))
    events.to_parquet(out / "events.parquet", index=False)
    histories = EventHistories.from_columns(
        {c: events[c].to_numpy() for c in events.columns}, result.globals.item_vocab, result.globals.category_vocab
    )
    return Featurized(out, TrainingData.load(out), TrainGlobals.load(out), histories, out / "events.parquet")


@pytest.fixture(scope="session")
def simulator(featurized: Featurized):
    from drlrec.rl.simulator import fit_simulator

    return fit_simulator(featurized.data, featurized.globals.stats, SimulatorConfig(), seed=0)
