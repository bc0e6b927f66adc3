"""Progress of the runs a leaderboard or sweep is training: one short status text per running cell.

A :class:`CellProgress` is the ``progress`` callback of one training run (``train(config, progress=...)``):
after each epoch it passes ``(cell, text)`` to ``show``, where ``text`` is
``epoch 4/10  acc 0.6120  ETA 1m05s`` (the last evaluated test accuracy; ``acc -`` before the first
evaluation; the ETA is the mean wall-clock per epoch so far, evaluation included, times the epochs left),
and ``(cell, None)`` once the run has ended. How it is shown (a live line on a terminal, one line per
epoch in a log file, nothing with ``--quiet``) is the caller's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Show = Callable[[str, "str | None"], None]


def format_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class CellProgress:
    """The ``progress`` callback of one run: per-epoch metrics -> ``show(cell, text)``."""

    def __init__(self, cell: str, show: Show, clock: Callable[[], float] = time.perf_counter) -> None:
        self.cell, self.show, self.clock = cell, show, clock
        self.acc: float | None = None
        self.t_start: float | None = None  # wall-clock at the start of the first epoch

    def __call__(self, m: dict[str, Any]) -> None:
        now = self.clock()
        done, total = int(m["epoch"]) + 1, int(m["epochs"])
        if self.t_start is None:  # the first epoch's own time stands in for its start
            self.t_start = now - float(m.get("epoch_time_s", 0.0))
        if "test_acc" in m:
            self.acc = float(m["test_acc"])
        per_epoch = (now - self.t_start) / done
        acc = f"acc {self.acc:.4f}" if self.acc is not None else "acc -"
        self.show(self.cell, f"epoch {done}/{total}  {acc}  ETA {format_seconds(per_epoch * max(0, total - done))}")

    def end(self) -> None:
        self.show(self.cell, None)


class QueueShow:
    """``show`` for a run in a worker process: puts ``(cell, text)`` on a multiprocessing queue."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def __call__(self, cell: str, text: str | None) -> None:
        try:
            self.queue.put_nowait((cell, text))
        except Exception:  # progress is best effort: never fail a run for it
            pass
