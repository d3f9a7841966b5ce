"""A stopwatch for optional instrumentation (e.g. the criterion's assignment time).

Components accept ``Optional[Stopwatch]``: ``None`` costs nothing; a stopwatch accumulates the
wall-clock seconds of the code run inside ``with watch:``. On CUDA it synchronises the device
before reading the clock, so queued kernels are charged to the block that launched them.
"""
from __future__ import annotations

import time
from typing import Optional

import torch


class Stopwatch:
    """Accumulated seconds of the ``with`` blocks it timed (re-entrant use is not supported).

    Args:
        device: the device whose queued work a block must finish before its time is read (CUDA);
            None or a CPU device: no synchronisation.
    """

    def __init__(self, device: Optional[torch.device | str] = None) -> None:
        self.device = None if device is None else torch.device(device)
        self.seconds = 0.0
        self.count = 0
        self._start: Optional[float] = None

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> "Stopwatch":
        if self._start is not None:
            raise RuntimeError("Stopwatch is already running (nested use)")
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._start is not None
        self._sync()
        self.seconds += time.perf_counter() - self._start
        self.count += 1
        self._start = None

    def reset(self) -> float:
        """The accumulated seconds; starts again from zero."""
        seconds, self.seconds, self.count = self.seconds, 0.0, 0
        return seconds
