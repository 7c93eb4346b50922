"""Progress lines for long loops that run without a terminal (a Prefect task, a CI log, `nohup`).

tqdm draws a bar only on a terminal, so a training task in a Prefect flow run said nothing in the run's
logs until it ended. `ProgressLog` writes one line every `every` steps (and at the last) with the step, the
figures it is given (loss, the last validation figure) and the ETA:

    log = ProgressLog("train", total=cfg.steps, every=cfg.log_every, enabled=progress)
    log.step(step, loss=0.41, valid_ndcg_at_10=0.0370)
    # train: step 500/1500 (33%), loss 0.4100, valid_ndcg_at_10 0.0370, 12.1 steps/s, ETA 1m23s

Inside a Prefect flow or task run the line goes through Prefect's run logger (so the UI and the API show
it), whatever `enabled` says; elsewhere it goes to stderr when `enabled` and stderr is not a terminal
(where the bar is drawn instead).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any


def prefect_run_logger() -> logging.Logger | logging.LoggerAdapter | None:
    """Prefect's logger of the current flow or task run, or None outside one (Prefect not even imported)."""
    if "prefect" not in sys.modules:
        return None
    try:
        from prefect.context import FlowRunContext, TaskRunContext
        from prefect.logging import get_run_logger

        if TaskRunContext.get() is None and FlowRunContext.get() is None:
            return None
        return get_run_logger()
    except Exception:  # no run context after all, or another Prefect version: no run logger
        return None


def eta_text(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class ProgressLog:
    """One line every `every` steps of a loop of `total` steps (see the module docstring)."""

    def __init__(self, name: str, total: int, every: int, enabled: bool = True, start: int = 0, unit: str = "step") -> None:
        self.name, self.total, self.every, self.unit = name, int(total), int(every), unit
        self.start = int(start)  # steps done before this call (a resumed run)
        self.started = time.perf_counter()
        self.run_logger = prefect_run_logger()
        self.to_stderr = enabled and not sys.stderr.isatty()
        self.lines = 0

    @property
    def active(self) -> bool:
        return self.every > 0 and (self.run_logger is not None or self.to_stderr)

    def step(self, step: int, **figures: Any) -> str | None:
        """Emit the line for `step` when it is due; returns it (or None)."""
        if not self.active or (step % self.every and step != self.total):
            return None
        done = max(step - self.start, 0)
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else float("nan")
        eta = (self.total - step) / rate if rate and rate == rate and rate > 0 else float("inf")
        shown = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items() if v is not None
        )
        line = (
            f"{self.name}: {self.unit} {step:,}/{self.total:,} ({step / max(self.total, 1):.0%})"
            + (f", {shown}" if shown else "")
            + f", {rate:.1f} {self.unit}s/s, ETA {eta_text(eta)}"
        )
        if self.run_logger is not None:  # Prefect also echoes it to the console
            self.run_logger.info(line)
        elif self.to_stderr:
            print(line, file=sys.stderr, flush=True)
        self.lines += 1
        return line
