"""Wall time per stage, written beside the figures so that the slow part of a run is visible
(and a speed-up can be checked against the same breakdown)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class StageTimer:
    """``with timer("pairs"): ...`` adds that block's wall time to ``timer.seconds["pairs"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - started, 2)
