"""One way to fit the DQN-LSTM, and no model or RL module that imports the training loop."""

from __future__ import annotations

import inspect

from import_graph import PACKAGE, import_graph

LOOP = "drlrec.rl.dqn"


def test_no_module_under_models_or_rl_imports_the_training_loop():
    graph = import_graph()
    offenders = sorted(
        name for name, deps in graph.items()
        if name.startswith(("drlrec.models", "drlrec.rl")) and name != LOOP and LOOP in deps
    )
    assert offenders == [], f"import the training loop: {offenders}"
    assert not (PACKAGE / "train.py").exists(), "drlrec.train is gone: the loop is drlrec.rl.dqn"


def test_the_training_loop_is_in_no_import_cycle():
    graph = import_graph()
    # everything reachable from the loop must not lead back to it
    seen, stack = set(), list(graph[LOOP])
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(graph.get(name, ()))
    assert LOOP not in seen, "an import cycle runs through drlrec.rl.dqn"


def test_there_is_one_fit_path_for_the_dqn_lstm():
    from drlrec.model_factory import DQNLSTMModel
    from drlrec.models.dqn_lstm import DQNLSTM
    from drlrec.rl import dqn

    assert not hasattr(DQNLSTM, "fit"), "DQNLSTM scores; drlrec.rl.dqn.fit_dqn_lstm trains it"
    assert not hasattr(dqn, "fit_dqn_lstm_online"), "online training goes through fit_dqn_lstm (train.mode)"
    fit_functions = sorted(n for n in vars(dqn) if n.startswith("fit_") and callable(getattr(dqn, n)))
    assert fit_functions == ["fit_dqn_lstm"]
    # the registry's model (what compare and tune fit) delegates to it
    assert "fit_dqn_lstm(" in inspect.getsource(DQNLSTMModel.fit)
