"""Run metrics: one JSON object per line in ``metrics.jsonl`` plus TensorBoard scalars (rank 0 only).

Every record has ``step`` and ``kind`` ("train" or "val"). When a run resumes from step s, records
after s (written by the killed process after its last checkpoint) are dropped, so the file always
describes one consistent run; TensorBoard gets the same treatment through ``purge_step``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Union

from pointformer.io.atomic import atomic_write_text


def read_metrics(path: Union[str, os.PathLike], kind: Optional[str] = None) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl file (optionally one kind), skipping a torn last line."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a process killed mid-write leaves at most one partial line
        if kind is None or record.get("kind") == kind:
            records.append(record)
    return records


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class MetricsLogger:
    """Append-only metrics for one run directory; every method is a no-op when ``enabled`` is False."""

    def __init__(self, run_dir: Union[str, os.PathLike], *, enabled: bool = True, resume_step: Optional[int] = None,
                 tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(run_dir) / "tensorboard"),
                                         purge_step=None if resume_step is None else resume_step + 1)

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": int(step), **_jsonable(values)}
        self._file.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
                    self._writer.add_scalar(f"{kind}/{key}", float(value), int(step))

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._writer is not None:
            self._writer.close()
