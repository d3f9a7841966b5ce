"""What every preprocessing pipeline shares: the run summary, the manifest a resumed run continues,
and the worker processes."""
from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Optional, Sequence, TypeVar

from pointformer.io.scene import Manifest, SceneFormatError

logger = logging.getLogger(__name__)

Task = TypeVar("Task")
Result = TypeVar("Result")


@dataclass
class RunSummary:
    """Scenes done / skipped (already up to date) / failed (scene id -> reason) of one run."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    unit: ClassVar[str] = "scenes"

    @property
    def ok(self) -> bool:
        return not self.failed

    def counts(self) -> str:
        """Extra counts for the first line (e.g. ``"; 1000 points"``)."""
        return ""

    def details(self) -> list[str]:
        """Lines between the counts and the failures."""
        return []

    def format(self) -> str:
        total = len(self.done) + len(self.skipped) + len(self.failed)
        lines = [f"{total} {self.unit}: {len(self.done)} done, {len(self.skipped)} skipped (already up to date), "
                 f"{len(self.failed)} failed{self.counts()}; {self.seconds:.1f} s"]
        lines += self.details()
        lines += [f"  FAILED {reason}" for _, reason in sorted(self.failed.items())]
        return "\n".join(lines)


def resume_manifest(path: Path, fresh: Manifest) -> Manifest:
    """The manifest at ``path`` when it was written for the same dataset, split and class map as
    ``fresh`` (a resumed run continues it); ``fresh`` otherwise (every scene is redone)."""
    if not path.exists():
        return fresh
    try:
        old = Manifest.load(path)
    except SceneFormatError as exc:
        logger.warning("%s; every scene of %s is redone", exc, fresh.split)
        return fresh
    if (old.dataset, old.split, old.class_names, old.class_ids) != (fresh.dataset, fresh.split, fresh.class_names,
                                                                      fresh.class_ids):
        logger.warning("%s was written for another dataset, split or class map; its scenes are redone", path)
        return fresh
    return old


def run_in_processes(work: Callable[[Task], Result], tasks: Sequence[Task], workers: int, *,
                     on_worker_death: Callable[[Task], Result], initializer: Optional[Callable[..., None]] = None,
                     initargs: tuple[Any, ...] = ()) -> Iterator[Result]:
    """``work(task)`` for every task in ``workers`` processes, results in completion order. A worker that
    dies (killed for memory, a crash in native code) gives ``on_worker_death(task)`` for the tasks still in
    flight instead of hanging the run, as multiprocessing.Pool would."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    executor = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx, initializer=initializer,
                                   initargs=initargs)
    try:
        futures = {executor.submit(work, task): task for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                yield future.result()
            except BrokenProcessPool:
                yield on_worker_death(task)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
