"""The convergence study: Influencer Loss against Hungarian matching, on the same model and data.

Trains the project's model (``pointformer.models``) with the project's trainer (``pointformer.engine``)
on synthetic ScanNet-format scenes (``pointformer.synthetic`` -> ``pointformer.preprocess``) once per
(loss variant, seed), identical schedules, and evaluates mAP / mAP50 / mAP25 with the project's
ScanNet evaluator on held-out scenes every ``eval_every`` steps. Variants (``VARIANTS``):

    influencer           seeded queries, ownership form (the default loss)
    influencer_sigmoid   seeded queries, sigmoid form
    hungarian            learned queries, Mask3D's criterion (the baseline)
    hungarian_seeded     seeded queries, Mask3D's criterion
    greedy               learned queries, Mask3D's costs with a greedy assignment (ablation)
    influencer_unseeded  learned queries, ownership form with every query a candidate (ablation)

Per run it records, besides the metric curves: wall-clock per step split into data / model
forward / loss (of which: assignment = cost matrix + solver) / backward + optimiser step; at every
evaluation the duplicate rate, the unmatched-GT rate and the stability of the query->instance
assignment since the previous evaluation (definitions in ``docs/convergence.md``).

Resumable: each run lives in ``OUT/runs/<variant>/seed<k>/`` (the trainer's run directory with its
checkpoints every ``eval_every`` steps); its evaluations are kept in ``evaluations.json`` (rewritten
atomically after every evaluation) and a finished run writes ``done.json``. Re-running the same command
skips finished runs and continues interrupted ones from their last checkpoint (``trainer.resume=auto``).
The data are generated and preprocessed once under ``OUT/data/``.

    .venv/bin/python benchmarks/convergence.py                  # the CPU study (under an hour on 2 cores)
    .venv/bin/python benchmarks/convergence.py --full --device cuda --out benchmarks/results/convergence_full
    .venv/bin/python benchmarks/convergence.py --quick --out /tmp/conv   # two short runs (the test)

Prints one JSON line per event (data ready, run started / skipped / finished, evaluation, report) on
stdout; the report (tables + plots) is written by ``benchmarks/convergence_report.py`` at the end.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch

log = logging.getLogger("pointformer.benchmarks.convergence")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "convergence"


# ----------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Variant:
    """One training setup of the study: a loss and how queries are initialised."""

    name: str
    loss: str
    query_init: str
    label: str


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("influencer", "influencer", "seeded", "Influencer, seeded ownership"),
    Variant("influencer_sigmoid", "influencer_sigmoid", "seeded", "Influencer, seeded sigmoid"),
    Variant("hungarian", "hungarian", "learned", "Hungarian, learned queries"),
    Variant("hungarian_seeded", "hungarian", "seeded", "Hungarian, seeded queries"),
    Variant("greedy", "greedy", "learned", "Greedy assignment, learned queries"),
    Variant("influencer_unseeded", "influencer_unseeded", "learned", "Unseeded ownership, learned queries"),
)}


@dataclass(frozen=True)
class StudySize:
    """Data, schedule and model of one study setting (``--quick``, default, ``--full``)."""

    preset: str                 # Hydra experiment preset (pointformer/configs/experiment/<preset>.yaml)
    train_scenes: int
    val_scenes: int
    vertices: int               # target mesh vertices per synthetic scene
    steps: int
    eval_every: int
    log_every: int
    seeds: tuple[int, ...]
    variants: tuple[str, ...]
    data_seed: int = 0
    overrides: tuple[str, ...] = ()   # extra Hydra overrides for every run

    def validate(self) -> None:
        if self.train_scenes < 1 or self.val_scenes < 1:
            raise ValueError(f"need at least one train and one val scene, got {self.train_scenes} / {self.val_scenes}")
        if self.steps < 1 or self.eval_every < 1 or self.log_every < 1:
            raise ValueError(f"--steps, --eval-every and the log interval must be positive "
                             f"(got {self.steps}, {self.eval_every}, {self.log_every})")
        if self.eval_every % self.log_every:
            # the wall-clock accounting resumes at checkpoints, which sit at evaluation steps
            raise ValueError(f"eval_every={self.eval_every} must be a multiple of the log interval {self.log_every}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; available: {sorted(VARIANTS)}")
        if not self.variants or not self.seeds:
            raise ValueError("need at least one variant and one seed")


SIZES: dict[str, StudySize] = {
    # Two short runs: the end-to-end test.
    "quick": StudySize(preset="convergence", train_scenes=4, val_scenes=2, vertices=2500, steps=6, eval_every=3,
                       log_every=1, seeds=(0,), variants=("influencer", "hungarian"),
                       overrides=("model.decoder.num_queries=24", "model.decoder.num_layers=2", "trainer.keep_last=2")),
    # The CPU study: under an hour on a 2-core machine with --jobs 2.
    "default": StudySize(preset="convergence", train_scenes=24, val_scenes=8, vertices=5000, steps=300,
                         eval_every=50, log_every=10, seeds=(0, 1, 2), variants=tuple(VARIANTS)),
    # GPU: ScanNet-sized scenes (~150k vertices, ~20 instances), Mask3D-size model, 100 queries.
    "full": StudySize(preset="convergence_full", train_scenes=120, val_scenes=30, vertices=150000, steps=4000,
                      eval_every=250, log_every=25, seeds=(0, 1, 2), variants=tuple(VARIANTS)),
}


def emit(event: str, **values: Any) -> None:
    """One JSON line on stdout (the machine-readable log of the study)."""
    print(json.dumps({"event": event, **values}, default=_json_default), flush=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def atomic_write_json(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are shared files
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, default=_json_default, allow_nan=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it to redo that part of the study") from None


# ----------------------------------------------------------------------------------------- data
def prepare_data(out: Path, size: StudySize) -> Path:
    """Generate (once) synthetic ScanNet-format scenes and preprocess them; returns the data root.

    The folder name encodes the generator settings, so a different size never reuses stale data; a
    ``READY.json`` stamp is written last, so an interrupted preparation is redone.
    """
    from pointformer.preprocess.scannet import preprocess_scannet
    from pointformer.synthetic.scannet import generate_scannet

    total = size.train_scenes + size.val_scenes
    folder = out / "data" / f"synthetic_v{size.vertices}_n{size.train_scenes}+{size.val_scenes}_s{size.data_seed}"
    pre = folder / "preprocessed"
    stamp = folder / "READY.json"
    if stamp.is_file():
        emit("data", root=pre, cached=True, **read_json(stamp))
        return pre
    start = time.perf_counter()
    raw = folder / "raw"
    synthetic = generate_scannet(raw, num_scenes=total, num_test_scenes=0, seed=size.data_seed,
                                 target_vertices=size.vertices, val_fraction=size.val_scenes / total)
    if len(synthetic.splits["val"]) != size.val_scenes:
        raise RuntimeError(f"the generator made {len(synthetic.splits['val'])} val scenes, expected {size.val_scenes}")
    summary = preprocess_scannet(raw, pre, workers=max(1, min(8, os.cpu_count() or 1)), splits=["train", "val"],
                                 progress=False)
    if not summary.ok:
        raise RuntimeError(f"preprocessing the synthetic scenes failed: {summary.format()}")
    stats = _data_stats(pre)
    stats["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(stamp, stats)
    emit("data", root=pre, cached=False, **stats)
    return pre


def _data_stats(pre: Path) -> dict[str, Any]:
    """Scenes, vertices, superpoints (tokens) and annotated instances per split."""
    from pointformer.io.scene import load_scene

    stats: dict[str, Any] = {}
    for split in ("train", "val"):
        files = sorted((pre / split).glob("*.npz"))
        vertices, tokens, instances = [], [], []
        for f in files:
            scene = load_scene(f)
            vertices.append(int(scene.xyz.shape[0]))
            tokens.append(int(scene.superpoint.max()) + 1)
            instances.append(int(len(np.unique(scene.instance[scene.instance > 0]))))
        stats[split] = {"scenes": len(files), "vertices_mean": float(np.mean(vertices)),
                        "superpoints_mean": float(np.mean(tokens)), "instances_mean": float(np.mean(instances)),
                        "instances_max": int(np.max(instances))}
    return stats


# ----------------------------------------------------------------------------------------- timing
class AssignmentTimer:
    """Seconds spent in the matching baselines' assignment: the cost matrix and the solver.

    While active it wraps, wherever they exist, the places the losses package assigns through: the
    criterion's batched per-layer assignment (``InstanceCriterion._assign_layer``), the cost and
    solver functions as looked up by ``pointformer.losses.criterion`` and ``.hungarian``, and the
    solvers of ``pointformer.losses.matching.ASSIGNERS`` (the single-scene functional path). Nested
    wrapped calls count once (only the outermost is timed). The losses' code is untouched. The
    Influencer losses have no discrete assignment: 0 s. The end-to-end test fails if a refactor of
    the losses moves the assignment out of these places (Hungarian would then report 0 s).
    """

    PATCHED = (("pointformer.losses.criterion", ("matching_cost", "assign_many")),
               ("pointformer.losses.hungarian", ("matching_cost",)))

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0
        self._depth = 0

    def _timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            _sync(self.device)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _sync(self.device)
                self.seconds += time.perf_counter() - start
                self._depth -= 1
        return wrapper

    @contextlib.contextmanager
    def active(self, criterion: Any = None) -> Iterator["AssignmentTimer"]:
        import importlib

        from pointformer.losses import matching

        restore: list[tuple[Any, str, Any]] = []
        for module_name, names in self.PATCHED:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            for name in names:
                if hasattr(module, name):
                    restore.append((module, name, getattr(module, name)))
                    setattr(module, name, self._timed(getattr(module, name)))
        saved_assigners = dict(matching.ASSIGNERS)
        for name, fn in saved_assigners.items():
            matching.ASSIGNERS[name] = self._timed(fn)
        instance_patched = criterion is not None and hasattr(criterion, "_assign_layer")
        if instance_patched:
            criterion._assign_layer = self._timed(criterion._assign_layer)
        try:
            yield self
        finally:
            for module, name, original in reversed(restore):
                setattr(module, name, original)
            matching.ASSIGNERS.update(saved_assigners)
            if instance_patched:
                del criterion._assign_layer  # back to the class's method


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


TIMING_KEYS = ("data", "model", "loss", "assign", "backward", "step")


@dataclass
class StepClock:
    """Per-step wall-clock accounting of one run.

    A step is: data (previous optimiser step -> this loss call: loading + collation), model forward,
    loss (criterion forward, which contains the assignment), backward + clipping + optimiser step
    (loss end -> the optimiser's step hook). Intervals with a validation or a checkpoint in them are
    not steps: the data time of the first step after an evaluation (and of a run's first step) is not
    measured; the mean of the steps measured so far stands in for it in ``train_seconds``.
    """

    train_seconds: float = 0.0       # cumulative step time (all parts), across resumes
    sums: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in TIMING_KEYS})
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in TIMING_KEYS})
    _step_start: Optional[float] = None
    _loss_end: Optional[float] = None
    _last_opt_end: Optional[float] = None
    _pending: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, seconds: float) -> None:
        self.sums[key] += seconds
        self.counts[key] += 1

    def mean(self, key: str) -> Optional[float]:
        return self.sums[key] / self.counts[key] if self.counts[key] else None

    def interrupt(self) -> None:
        """A validation/checkpoint happened: the next data interval is not a step's."""
        self._last_opt_end = None

    def start_step(self, now: float) -> None:
        self._pending = {}
        if self._last_opt_end is not None:
            self._pending["data"] = now - self._last_opt_end
        self._step_start = now

    def forward_done(self, model_s: float, loss_s: float, assign_s: float, now: float) -> None:
        self._pending.update(model=model_s, loss=loss_s, assign=assign_s)
        self._loss_end = now

    def optimizer_done(self, now: float) -> None:
        if self._loss_end is None:  # a step hook outside a study step (not ours)
            return
        pending = dict(self._pending, backward=now - self._loss_end)
        data = pending.get("data", self.mean("data") or 0.0)
        step = data + pending["model"] + pending["loss"] + pending["backward"]
        for key, value in pending.items():
            self.add(key, value)
        self.add("step", step)
        self.train_seconds += step
        self._last_opt_end, self._loss_end, self._pending = now, None, {}

    def summary(self) -> dict[str, Optional[float]]:
        return {f"t_{k}": self.mean(k) for k in TIMING_KEYS}


# ----------------------------------------------------------------------------------------- diagnostics
@dataclass
class SceneDiagnostics:
    """Query-level outcome of one evaluated scene (class-agnostic, IoU at 0.5 on token masks)."""

    num_gt: int                     # GT instances of >= MIN_REGION_SIZE points
    hits: int                       # predicted queries whose best GT has IoU > 0.5
    duplicates: int                 # ... of which that GT was already covered by a higher-scored query
    num_queries: int                # distinct queries among the predictions
    covered_by: dict[int, int]      # GT instance id -> the highest-scored query covering it


def scene_diagnostics(instances: Any, token_instance: torch.Tensor, token_weight: torch.Tensor,
                      min_region_size: int) -> SceneDiagnostics:
    """Duplicates, covered GT and the query->instance assignment of one scene.

    Args:
        instances: ``InstancePrediction`` over tokens (masks bool [M, P], scores [M], query_index [M]);
            a query may appear with several classes (Mask3D's rule) — it counts once, with its best score.
        token_instance: long [P] GT instance of each token (0 background, -1 ignore).
        token_weight: float [P] points per token (IoUs are point-weighted, as the evaluator's).
    """
    masks = instances.masks.detach().cpu()
    scores = instances.scores.detach().float().cpu()
    queries = instances.query_index.detach().cpu()
    inst = token_instance.detach().cpu().long()
    weight = token_weight.detach().cpu().double()
    ids = [int(k) for k in torch.unique(inst) if int(k) > 0]
    sizes = {k: float(weight[inst == k].sum()) for k in ids}
    gt_ids = [k for k in ids if sizes[k] >= min_region_size]
    # one entry per query: its best-scored prediction (all entries of a query share the mask)
    best: dict[int, int] = {}
    for row in torch.argsort(scores, descending=True, stable=True).tolist():
        best.setdefault(int(queries[row]), row)
    rows = list(best.values())  # in descending score order
    covered: dict[int, int] = {}
    hits = duplicates = 0
    if rows and gt_ids:
        valid = (inst >= 0).double() * weight  # ignore tokens are out of the IoU, as in the evaluator
        pred = masks[rows].double() * valid                                   # [Q, P] point-weighted
        gt = torch.stack([(inst == k).double() for k in gt_ids])              # [K, P] binary
        inter = pred @ gt.T                                                    # points in both
        union = pred.sum(1, keepdim=True) + (gt * weight).sum(1).unsqueeze(0) - inter
        iou = inter / union.clamp_min(1e-9)
        best_iou, best_gt = iou.max(dim=1)
        for i, row in enumerate(rows):
            if float(best_iou[i]) <= 0.5:
                continue
            hits += 1
            k = gt_ids[int(best_gt[i])]
            if k in covered:
                duplicates += 1
            else:
                covered[k] = int(queries[row])
    return SceneDiagnostics(num_gt=len(gt_ids), hits=hits, duplicates=duplicates, num_queries=len(rows),
                            covered_by=covered)


def assignment_stability(previous: dict[str, dict[str, int]], current: dict[str, dict[str, int]]) -> dict[str, Any]:
    """How the query->instance assignment changed between two evaluations.

    ``stability``: of the GT instances covered at both evaluations, the share covered by the same
    query; ``retention``: of those covered at the previous one, the share covered by the same query now.
    """
    both = same = before = kept = 0
    for scene, now in current.items():
        prev = previous.get(scene, {})
        for k, q in prev.items():
            before += 1
            if now.get(k) == q:
                kept += 1
            if k in now:
                both += 1
                same += int(now[k] == q)
    return {"assignment_stability": same / both if both else None,
            "assignment_retention": kept / before if before else None}


# ----------------------------------------------------------------------------------------- the task
class StudyTask:
    """The engine's ``InstanceSegmentationTask`` with the study's instrumentation.

    Training: the same model call and criterion, timed part by part. Validation: the same predictions
    (``predict_instances`` -> ``to_scene_prediction``) plus query-level diagnostics; ``evaluate`` adds
    duplicate / unmatched-GT rates, assignment stability and the cumulative train time to the metrics
    (so they reach the trainer's metrics.jsonl) and persists ``evaluations.json`` atomically.
    """

    def __init__(self, *, inner: Any, run_dir: Path, device: torch.device, steps: Callable[[], int],
                 min_region_size: int, meta: dict[str, Any]) -> None:
        self.inner = inner
        self.run_dir = run_dir
        self.device = device
        self.steps = steps
        self.min_region_size = min_region_size
        self.meta = meta
        self.clock = StepClock()
        self._pending: dict[str, SceneDiagnostics] = {}
        self._started = False
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._hook = register_optimizer_step_post_hook(self._on_optimizer_step)
        self.evaluations: list[dict[str, Any]] = []

    def close(self) -> None:
        self._hook.remove()

    # the Task protocol -----------------------------------------------------------------------
    def training_loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        if not self._started:
            self._restore(self.steps())
            self._started = True
        _sync(self.device)
        start = time.perf_counter()
        self.clock.start_step(start)
        out = model(batch)
        _sync(self.device)
        after_model = time.perf_counter()
        timer = AssignmentTimer(self.device)
        with timer.active(self.inner.criterion):
            losses = self.inner.criterion(out.layers, out.query_seed_token, batch.targets, out.token_objectness)
        _sync(self.device)
        after_loss = time.perf_counter()
        self.clock.forward_done(after_model - start, after_loss - after_model, timer.seconds, after_loss)
        logs = {k: float(v) for k, v in losses.items() if k != "loss" and "/" not in k}
        logs.update(t_model=after_model - start, t_loss=after_loss - after_model, t_assign=timer.seconds)
        return losses["loss"], logs

    def _on_optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        _sync(self.device)
        self.clock.optimizer_done(time.perf_counter())

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, batch: Any) -> list[Any]:
        self.clock.interrupt()
        predictions = []
        for b, (instances, point_tokens) in enumerate(self.inner.predict_instances(model, batch)):
            predictions.append(instances.to_scene_prediction(point_tokens, self.inner.class_ids))
            target = batch.targets[b]
            self._pending[batch.scene_ids[b]] = scene_diagnostics(instances, target.token_instance, target.token_weight,
                                                                  self.min_region_size)
        return predictions

    def evaluate(self, gt_ids: Sequence[np.ndarray], predictions: Sequence[Any], scene_ids: Sequence[str]) -> dict[str, Any]:
        self.clock.interrupt()
        metrics = self.inner.evaluate(gt_ids, predictions, scene_ids)
        step = self.steps()
        diags = [self._pending.pop(s) for s in scene_ids]
        num_gt = sum(d.num_gt for d in diags)
        hits = sum(d.hits for d in diags)
        current = {s: {str(k): q for k, q in d.covered_by.items()} for s, d in zip(scene_ids, diags)}
        previous = self._previous_assignment(step)
        stability = assignment_stability(previous, current) if previous is not None else {
            "assignment_stability": None, "assignment_retention": None}
        atomic_write_json(self.run_dir / "assignments" / f"step_{step:08d}.json", current)
        extra = {
            "duplicate_rate": sum(d.duplicates for d in diags) / hits if hits else 0.0,
            "unmatched_gt_rate": 1.0 - sum(len(d.covered_by) for d in diags) / num_gt if num_gt else None,
            "queries_per_scene": float(np.mean([d.num_queries for d in diags])) if diags else 0.0,
            **stability,
            "train_seconds": self.clock.train_seconds,
            **self.clock.summary(),
        }
        metrics.update(extra)
        record = {"step": step, **{k: metrics[k] for k in ("map", "map50", "map25")}, **extra}
        self.evaluations = [r for r in self.evaluations if r["step"] < step] + [{**record, "clock": self._clock_state()}]
        atomic_write_json(self.run_dir / "evaluations.json", {**self.meta, "evaluations": self.evaluations})
        emit("eval", variant=self.meta["variant"], seed=self.meta["seed"], **record)
        return metrics

    # persistence --------------------------------------------------------------------------------
    def _clock_state(self) -> dict[str, Any]:
        return {"train_seconds": self.clock.train_seconds, "sums": dict(self.clock.sums), "counts": dict(self.clock.counts)}

    def _restore(self, step: int) -> None:
        """Continue the evaluations and the clock of an interrupted run from its resumed step
        (checkpoints sit at evaluation steps, so the record of that step carries the clock)."""
        path = self.run_dir / "evaluations.json"
        self.evaluations = []
        if step == 0 or not path.is_file():
            return
        self.evaluations = [r for r in read_json(path).get("evaluations", []) if r["step"] <= step]
        if not self.evaluations:
            log.warning("resumed at step %d without evaluation records; train_seconds counts from here", step)
            return
        state = self.evaluations[-1]["clock"]
        if self.evaluations[-1]["step"] != step:
            log.warning("resumed at step %d, last evaluation record at %d: train_seconds misses the steps between",
                        step, self.evaluations[-1]["step"])
        self.clock.train_seconds = float(state["train_seconds"])
        self.clock.sums = {k: float(state["sums"].get(k, 0.0)) for k in TIMING_KEYS}
        self.clock.counts = {k: int(state["counts"].get(k, 0)) for k in TIMING_KEYS}

    def _previous_assignment(self, step: int) -> Optional[dict[str, dict[str, int]]]:
        folder = self.run_dir / "assignments"
        earlier = sorted(p for p in folder.glob("step_*.json") if int(p.stem[5:]) < step) if folder.is_dir() else []
        return read_json(earlier[-1]) if earlier else None



# ----------------------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class RunSpec:
    """Everything a (worker) process needs to train one run: picklable, no live objects."""

    variant: str
    seed: int
    run_dir: str
    overrides: tuple[str, ...]
    threads: int
    fingerprint: str


def run_overrides(size: StudySize, variant: Variant, seed: int, data_root: Path, run_dir: Path, device: str,
                  data_config: str = "synthetic", batch_size: Optional[int] = None) -> list[str]:
    """The Hydra overrides of one run: the preset, the variant, the data, the schedule and the run folder."""
    # the OneCycle schedule spans epochs x steps-per-epoch >= steps: it ends (almost) with the run
    batch_size = batch_size or _batch_size(size)
    epochs = math.ceil(size.steps / max(size.train_scenes // batch_size, 1))
    return [
        f"experiment={size.preset}", f"loss={variant.loss}", f"model.decoder.query_init={variant.query_init}",
        *([f"data={data_config}"] if data_config != "synthetic" else []), f"data.root={data_root}",
        f"run_dir={run_dir}", f"trainer.seed={seed}", f"trainer.device={device}",
        f"trainer.max_steps={size.steps}", f"trainer.epochs={epochs}",
        f"trainer.val_every_steps={size.eval_every}", f"trainer.checkpoint_every_steps={size.eval_every}",
        f"trainer.log_every={size.log_every}", "trainer.resume=auto",
        *size.overrides,
    ]


def _batch_size(size: StudySize) -> int:
    from pointformer.engine.config import compose_config

    cfg = compose_config([f"experiment={size.preset}", *size.overrides])
    return int(cfg.trainer.batch_size)


def train_one(spec: RunSpec) -> dict[str, Any]:
    """Train (or continue) one run through the project's engine; returns its done.json payload."""
    torch.set_num_threads(spec.threads)
    from omegaconf import open_dict

    from pointformer.engine.build import (build_model, build_task, check_classes, make_dataset, plain_config,
                                          resolve_color_stats)
    from pointformer.engine.config import compose_config, container, to_yaml
    from pointformer.engine.distributed import DistInfo
    from pointformer.engine.run import setup_logging
    from pointformer.engine.trainer import Trainer, TrainerConfig, seed_everything
    from pointformer.evaluation import MIN_REGION_SIZE

    run_dir = Path(spec.run_dir)
    emit("run_started", variant=spec.variant, seed=spec.seed, run_dir=spec.run_dir, pid=os.getpid())
    cfg = compose_config(list(spec.overrides))
    trainer_cfg = TrainerConfig.from_mapping(container(cfg.trainer))
    resolve_color_stats(cfg)
    train_set = make_dataset(cfg, str(cfg.data.train_split), train=True)
    val_set = make_dataset(cfg, str(cfg.data.val_split), train=False)
    class_ids = check_classes(cfg, train_set)
    inner = build_task(cfg, class_ids)
    seed_everything(int(cfg.trainer.seed))  # as `pointformer train`: the initial weights follow the seed
    model = build_model(cfg)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    config_yaml = to_yaml(plain_config(cfg))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_yaml)
    setup_logging(run_dir, DistInfo())
    for handler in logging.getLogger("pointformer").handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)  # stdout carries the study's JSON lines; details go to train.log
    meta = {"variant": spec.variant, "label": VARIANTS[spec.variant].label, "seed": spec.seed,
            "fingerprint": spec.fingerprint,
            "loss": str(cfg.loss.name), "query_init": str(cfg.model.decoder.query_init),
            "num_queries": int(cfg.model.decoder.num_queries), "model": str(cfg.model.name),
            "parameters": int(sum(p.numel() for p in model.parameters()))}
    holder: dict[str, Trainer] = {}
    task = StudyTask(inner=inner, run_dir=run_dir, device=torch.device("cpu"), steps=lambda: holder["t"].step,
                     min_region_size=MIN_REGION_SIZE, meta=meta)
    try:
        trainer = Trainer(model=model, task=task, train_set=train_set, val_set=val_set, cfg=trainer_cfg,
                          run_dir=run_dir, config_yaml=config_yaml)
        holder["t"] = trainer
        task.device = trainer.device
        start = time.perf_counter()
        result = trainer.fit()
        elapsed = time.perf_counter() - start
    finally:
        task.close()
    if not task._started:  # resumed at the last step: nothing left to train, the records are on disk
        task._restore(result.step)
    if result.step < int(cfg.trainer.max_steps):
        raise RuntimeError(f"{run_dir}: stopped at step {result.step} of {cfg.trainer.max_steps}")
    final = {k: v for k, v in task.evaluations[-1].items() if k != "clock"} if task.evaluations else {}
    done = {**meta, "step": result.step, "final": final, "process_seconds_last_session": elapsed,
            "resumed_from": result.resumed_from, "timing": task.clock.summary(),
            "train_seconds": task.clock.train_seconds, "device": str(trainer.device), "threads": spec.threads}
    atomic_write_json(run_dir / "done.json", done)
    return done


def fingerprint(size: StudySize, variant: Variant, seed: int, device: str,
                external_data: Optional[str] = None) -> str:
    """What makes two runs the same run (not the output folder): preset, data, schedule, variant, seed."""
    key = {"size": {**asdict(size), "variants": None, "seeds": None}, "variant": asdict(variant), "seed": seed,
           "device": device}
    if external_data is not None:  # generated data live inside OUT (a moved study keeps its fingerprints)
        key["external_data"] = external_data
    key = json.dumps(key, sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def plan_runs(out: Path, size: StudySize, data_root: Path, device: str, threads: int,
              data_config: str = "synthetic", external: bool = False) -> list[RunSpec]:
    specs = []
    batch_size = _batch_size(size)
    # seed-major: an interrupted or time-limited study has every variant at its first seeds
    for seed in size.seeds:
        for name in size.variants:
            variant = VARIANTS[name]
            run_dir = out / "runs" / name / f"seed{seed}"
            specs.append(RunSpec(variant=name, seed=seed, run_dir=str(run_dir), threads=threads,
                                 overrides=tuple(run_overrides(size, variant, seed, data_root, run_dir, device,
                                                               data_config, batch_size)),
                                 fingerprint=fingerprint(size, variant, seed, device,
                                                         f"{data_config}:{data_root}" if external else None)))
    return specs


def check_run_dir(spec: RunSpec) -> Optional[dict[str, Any]]:
    """The done.json of a finished run (None when it must (continue to) train); ValueError when the
    folder holds a different run (another size / schedule): the study never mixes two settings."""
    run_dir = Path(spec.run_dir)
    for name in ("done.json", "evaluations.json"):
        path = run_dir / name
        if path.is_file():
            found = read_json(path).get("fingerprint")
            if found != spec.fingerprint:
                raise ValueError(f"{run_dir} holds a run of different settings (fingerprint {found}, this study "
                                 f"{spec.fingerprint}); use another --out or delete that folder")
    done = run_dir / "done.json"
    return read_json(done) if done.is_file() else None


def run_study(out: Path, size: StudySize, *, device: str = "cpu", jobs: int = 1, threads: int = 1,
              report: bool = True, data_root: Optional[Path] = None, data_config: str = "synthetic") -> dict[str, Any]:
    """Prepare the data, train every (variant, seed) not yet finished, write the report.

    ``data_root``: an already preprocessed dataset (e.g. ScanNet from ``pointformer preprocess scannet``,
    with ``data_config="scannet"``) instead of the generated synthetic scenes.
    """
    size.validate()
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but CUDA is not available (use --device cpu, or run on a GPU machine)")
    out.mkdir(parents=True, exist_ok=True)
    study_start = time.perf_counter()
    external = data_root is not None
    if external:
        data_root = Path(data_root).resolve()
        if not (data_root / "train").is_dir() or not (data_root / "val").is_dir():
            raise ValueError(f"--data-root {data_root}: expected a preprocessed dataset with train/ and val/ "
                             "(the OUT_DIR of `pointformer preprocess scannet`)")
        emit("data", root=data_root, cached=True, config=data_config)
    else:
        data_root = prepare_data(out, size)
    specs = plan_runs(out, size, data_root, device, threads, data_config, external)
    todo = []
    for spec in specs:
        done = check_run_dir(spec)
        if done is not None:
            emit("run_skipped", variant=spec.variant, seed=spec.seed, reason="finished", final=done.get("final"))
        else:
            todo.append(spec)
    atomic_write_json(out / "study.json", {"size": asdict(size), "device": device, "jobs": jobs, "threads": threads,
                                           "data_root": str(data_root), "runs": [asdict(s) for s in specs],
                                           "torch": torch.__version__, "cpu_count": os.cpu_count()})
    if jobs <= 1 or len(todo) <= 1:
        for spec in todo:
            done = train_one(spec)
            emit("run_finished", variant=spec.variant, seed=spec.seed, final=done["final"], timing=done["timing"])
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {}
            for spec in todo:
                emit("run_queued", variant=spec.variant, seed=spec.seed, run_dir=spec.run_dir)
                futures[pool.submit(train_one, spec)] = spec  # workers print on the shared stdout
            for future in as_completed(futures):
                spec = futures[future]
                done = future.result()
                emit("run_finished", variant=spec.variant, seed=spec.seed, final=done["final"], timing=done["timing"])
    summary: dict[str, Any] = {"out": out, "runs": len(specs), "trained": len(todo),
                               "seconds": round(time.perf_counter() - study_start, 1)}
    if report:
        report_module = _report_module()
        summary["report"] = report_module.write_report(out)
    emit("study_finished", **summary)
    return summary


def _report_module() -> Any:
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import convergence_report  # the sibling file (benchmarks/ is not a package)

    return convergence_report


# ----------------------------------------------------------------------------------------- CLI
def build_size(args: argparse.Namespace) -> StudySize:
    size = SIZES["quick" if args.quick else "full" if args.full else "default"]
    changes: dict[str, Any] = {}
    if args.variants:
        changes["variants"] = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if args.seeds:
        changes["seeds"] = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    for key in ("steps", "eval_every", "train_scenes", "val_scenes", "vertices"):
        value = getattr(args, key)
        if value is not None:
            changes[key] = value
    if "eval_every" in changes and "log_every" not in changes:
        changes["log_every"] = math.gcd(changes["eval_every"], size.log_every)
    if args.override:
        changes["overrides"] = size.overrides + tuple(args.override)
    size = replace(size, **changes)
    size.validate()
    return size


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="two short runs on tiny scenes (the test)")
    which.add_argument("--full", action="store_true", help="GPU setting: ScanNet-sized scenes, Mask3D-size model")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default {DEFAULT_OUT}; --quick and --full need an explicit one)")
    parser.add_argument("--variants", default=None, help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run")
    parser.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (and checkpoints)")
    parser.add_argument("--train-scenes", type=int, default=None)
    parser.add_argument("--val-scenes", type=int, default=None)
    parser.add_argument("--vertices", type=int, default=None, help="target vertices per synthetic scene")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="extra Hydra override for every run (repeatable), e.g. trainer.lr=1e-3")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="train/evaluate on this preprocessed dataset instead of generated synthetic scenes "
                             "(e.g. ScanNet: the OUT_DIR of `pointformer preprocess scannet`)")
    parser.add_argument("--data-config", default=None,
                        help="data config group for --data-root (default scannet; synthetic without --data-root)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--no-report", action="store_true", help="train only; write the report later with "
                        "benchmarks/convergence_report.py OUT")
    args = parser.parse_args(argv)
    if (args.quick or args.full) and args.out is None:
        parser.error("--quick and --full write elsewhere than the recorded CPU study: pass --out")
    if args.jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads must be >= 1")
    out = args.out or DEFAULT_OUT
    try:
        size = build_size(args)
        run_study(out, size, device=args.device, jobs=args.jobs, threads=args.threads, report=not args.no_report,
                  data_root=args.data_root,
                  data_config=args.data_config or ("scannet" if args.data_root else "synthetic"))
    except ValueError as exc:
        print(f"convergence: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
