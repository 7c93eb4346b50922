"""The registry gate's rule, a pure function: better by more than the margin, or no champion yet.
(Moved from tests/integration/test_registry.py, whose other tests need a trained model.)"""

from __future__ import annotations

import pytest

from drlrec import registry


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "promoted"),
    [
        (0.20, None, 0.0, True),  # no champion yet
        (0.10, 0.20, 0.0, False),  # worse
        (0.20, 0.20, 0.0, False),  # equal is not better
        (0.21, 0.20, 0.05, False),  # better, but not by the margin
        (0.26, 0.20, 0.05, True),
        (0.2001, 0.20, 0.0, True),
    ],
)
def test_gate_rule(challenger, champion, margin, promoted) -> None:
    assert registry.gate(challenger, champion, margin)[0] is promoted
