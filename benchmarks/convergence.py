"""The convergence study: Influencer Loss against Hungarian matching, on the same model and data.

Trains the project's model with ``pointformer.engine.run.run_training``, the entry point of
``pointformer train``, on synthetic ScanNet-format scenes (``pointformer.synthetic`` ->
``pointformer.preprocess``) once per (loss variant, seed), identical schedules, and evaluates mAP /
mAP50 / mAP25 with the project's ScanNet evaluator on held-out scenes every ``eval_every`` steps.
Variants (``VARIANTS``):

    influencer           seeded queries, ownership form (the default loss)
    influencer_sigmoid   seeded queries, sigmoid form
    hungarian            learned queries, Mask3D's criterion (the baseline)
    hungarian_seeded     seeded queries, Mask3D's criterion
    greedy               learned queries, Mask3D's costs with a greedy assignment (ablation)
    influencer_unseeded  learned queries, ownership form with every query a candidate (ablation)
    influencer_objectness  seeded queries, ownership form, objectness-guided seeding (run by name only)

Per run it records, besides the metric curves: wall-clock per step split into data / model
forward / loss (of which: assignment = cost matrix + solver) / backward + optimiser step; at every
evaluation the duplicate rate, the unmatched-GT rate and the stability of the query->instance
assignment since the previous evaluation (definitions in ``docs/convergence.md``). The study uses the
engine's public seams only: a trainer hook (``StudyHook``: timing, diagnostics, records, checkpointed
state), a task wrapping the run's task (``StudyTask``: times the model call, keeps the predictions'
query diagnostics from ``pointformer.evaluation.query_diagnostics``) and the criterion's own
``assignment_timer``.

Resumable: each run lives in ``OUT/runs/<variant>/seed<k>/`` (the trainer's run directory with its
checkpoints every ``eval_every`` steps, which also hold the hook's state); its evaluations are kept in
``evaluations.json`` (rewritten atomically after every evaluation) and a finished run writes
``done.json``. Re-running the same command skips finished runs and continues interrupted ones from
their last checkpoint (``trainer.resume=auto``).
The data are generated and preprocessed once under ``OUT/data/``.

    .venv/bin/python benchmarks/convergence.py                  # the CPU study (under an hour on 2 cores)
    .venv/bin/python benchmarks/convergence.py --full --device cuda --out benchmarks/results/convergence_full
    .venv/bin/python benchmarks/convergence.py --quick --out /tmp/conv   # two short runs (the test)

Prints one JSON line per event (data ready, run started / skipped / finished, evaluation, report) on
stdout; the report (tables + plots) is written by ``benchmarks/convergence_report.py`` at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import torch

from pointformer.engine.hooks import Hook, StepOutput
from pointformer.evaluation.query_diagnostics import (SceneDiagnostics, assignment, assignment_stability,
                                                      scene_diagnostics, summarize)
from pointformer.evaluation.seed_coverage import SceneSeedCoverage, scene_seed_coverage, summarize_seed_coverage
from pointformer.io.atomic import atomic_write_json
from pointformer.timing import Stopwatch

if TYPE_CHECKING:
    from pointformer.engine.trainer import Trainer

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
    overrides: tuple[str, ...] = ()   # extra Hydra overrides of this variant (e.g. the seeding strategy)


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("influencer", "influencer", "seeded", "Influencer, seeded ownership"),
    Variant("influencer_sigmoid", "influencer_sigmoid", "seeded", "Influencer, seeded sigmoid"),
    Variant("hungarian", "hungarian", "learned", "Hungarian, learned queries"),
    Variant("hungarian_seeded", "hungarian", "seeded", "Hungarian, seeded queries"),
    Variant("greedy", "greedy", "learned", "Greedy assignment, learned queries"),
    Variant("influencer_unseeded", "influencer_unseeded", "learned", "Unseeded ownership, learned queries"),
    # the seeded ownership form with objectness-guided seeding in training and evaluation (FPS among the
    # tokens the objectness head calls foreground; docs/convergence.md, "ScanNet scale")
    Variant("influencer_objectness", "influencer", "seeded", "Influencer, seeded ownership, objectness seeding",
            overrides=("model.decoder.seed_sampling=objectness",)),
)}

# the variants of the default and --full studies (influencer_objectness is run by name: --variants)
STUDY_VARIANTS = ("influencer", "influencer_sigmoid", "hungarian", "hungarian_seeded", "greedy", "influencer_unseeded")


@dataclass(frozen=True)
class StudySize:
    """Data, schedule and model of one study setting (``--quick``, default, ``--full``)."""

    preset: str                 # Hydra experiment preset (configs/experiment/<preset>.yaml)
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
    scene_preset: str = "basic"       # generator preset (pointformer.synthetic.presets): basic | scannet
    lrs: tuple[float, ...] = ()       # learning-rate sweep: one run per (variant, lr, seed); () = the preset's lr
    variant_lrs: tuple[tuple[str, float], ...] = ()   # (variant, lr): that variant runs at this lr only

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
        if any(not lr > 0 for lr in self.lrs) or any(not lr > 0 for _, lr in self.variant_lrs):
            raise ValueError(f"learning rates must be positive, got {self.lrs} / {self.variant_lrs}")
        unknown = [v for v, _ in self.variant_lrs if v not in VARIANTS]
        if unknown:
            raise ValueError(f"--lr-for names unknown variant(s) {unknown}; available: {sorted(VARIANTS)}")

    def lrs_of(self, variant: str) -> tuple[Optional[float], ...]:
        """The learning rates a variant runs at (None: the preset's own)."""
        chosen = tuple(lr for v, lr in self.variant_lrs if v == variant)
        return chosen or self.lrs or (None,)


SIZES: dict[str, StudySize] = {
    # Two short runs: the end-to-end test.
    "quick": StudySize(preset="convergence", train_scenes=4, val_scenes=2, vertices=2500, steps=6, eval_every=3,
                       log_every=1, seeds=(0,), variants=("influencer", "hungarian"),
                       overrides=("model.decoder.num_queries=24", "model.decoder.num_layers=2", "trainer.keep_last=2")),
    # The CPU study: under an hour on a 2-core machine with --jobs 2.
    "default": StudySize(preset="convergence", train_scenes=24, val_scenes=8, vertices=5000, steps=300,
                         eval_every=50, log_every=10, seeds=(0, 1, 2), variants=STUDY_VARIANTS),
    # GPU: ScanNet-sized scenes (~150k vertices, ~20 instances), Mask3D-size model, 100 queries.
    "full": StudySize(preset="convergence_full", train_scenes=120, val_scenes=30, vertices=150000, steps=4000,
                      eval_every=250, log_every=25, seeds=(0, 1, 2), variants=STUDY_VARIANTS),
    # The Influencer Loss at ScanNet scale (docs/convergence.md, "ScanNet scale"): the generator's scannet
    # preset (150k vertices, ~2k superpoints, 25-50 objects, many small), the four losses, an lr sweep.
    # The recorded, scaled-down setting (a 45-minute CPU budget): the lr sweep on seed 0, then seeds 1 and 2
    # at each variant's best lr (--lr-from-sweep --seeds 1,2); the full commands are in docs/convergence.md.
    "scannet_scale": StudySize(preset="convergence_scannet_scale", train_scenes=8, val_scenes=4, vertices=150000,
                               steps=60, eval_every=15, log_every=5, seeds=(0,),
                               overrides=("trainer.batch_size=1",),
                               variants=("influencer", "influencer_sigmoid", "hungarian", "greedy"),
                               scene_preset="scannet", lrs=(1.5e-3, 3e-3, 6e-3)),
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
    preset = "" if size.scene_preset == "basic" else f"_{size.scene_preset}"
    folder = out / "data" / (f"synthetic{preset}_v{size.vertices}_n{size.train_scenes}+{size.val_scenes}"
                             f"_s{size.data_seed}")
    pre = folder / "preprocessed"
    stamp = folder / "READY.json"
    if stamp.is_file():
        emit("data", root=pre, cached=True, **read_json(stamp))
        return pre
    start = time.perf_counter()
    raw = folder / "raw"
    synthetic = generate_scannet(raw, num_scenes=total, num_test_scenes=0, seed=size.data_seed,
                                 target_vertices=size.vertices, val_fraction=size.val_scenes / total,
                                 preset=size.scene_preset)
    if len(synthetic.splits["val"]) != size.val_scenes:
        raise RuntimeError(f"the generator made {len(synthetic.splits['val'])} val scenes, expected {size.val_scenes}")
    summary = preprocess_scannet(raw, pre, workers=max(1, min(8, os.cpu_count() or 1)), splits=["train", "val"],
                                 progress=False)
    if not summary.ok:
        raise RuntimeError(f"preprocessing the synthetic scenes failed: {summary.format()}")
    stats = _data_stats(pre)
    stats["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(stamp, stats, default=_json_default)
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
TIMING_KEYS = ("data", "model", "loss", "assign", "backward", "step")


@dataclass
class StepClock:
    """Per-step wall-clock accounting of one run, across resumes.

    A step is: ``data`` (waiting for the batch, moving it to the device), ``model`` (forward),
    ``loss`` (the rest of the training loss: the criterion, which contains ``assign``) and
    ``backward`` (backward, clipping, optimiser step). Validation and checkpoints are not steps.
    """

    train_seconds: float = 0.0       # cumulative step time (all parts)
    sums: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in TIMING_KEYS})
    counts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in TIMING_KEYS})

    def add_step(self, *, data: float, model: float, loss: float, assign: float, backward: float) -> None:
        step = data + model + loss + backward
        for key, seconds in (("data", data), ("model", model), ("loss", loss), ("assign", assign),
                             ("backward", backward), ("step", step)):
            self.sums[key] += seconds
            self.counts[key] += 1
        self.train_seconds += step

    def mean(self, key: str) -> Optional[float]:
        return self.sums[key] / self.counts[key] if self.counts[key] else None

    def summary(self) -> dict[str, Optional[float]]:
        return {f"t_{k}": self.mean(k) for k in TIMING_KEYS}

    def state_dict(self) -> dict[str, Any]:
        return {"train_seconds": self.train_seconds, "sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_seconds = float(state["train_seconds"])
        self.sums = {k: float(state["sums"].get(k, 0.0)) for k in TIMING_KEYS}
        self.counts = {k: int(state["counts"].get(k, 0)) for k in TIMING_KEYS}


# ----------------------------------------------------------------------------------------- the task and the hook
class TimedCall:
    """Calls ``module`` with the time charged to ``watch`` (what the task sees as its model); keeps the
    seed tokens of the last call (``last_seeds``: per scene long [N_b], -1 for learned queries)."""

    def __init__(self, module: torch.nn.Module, watch: Stopwatch) -> None:
        self.module = module
        self.watch = watch
        self.last_seeds: Optional[list[torch.Tensor]] = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.watch:
            out = self.module(*args, **kwargs)
        seeds = [s.detach() for s in getattr(out, "query_seed_token", None) or []]
        # learned queries (seed -1 everywhere) have no seeds: no coverage to measure
        self.last_seeds = seeds if any(bool((s >= 0).any()) for s in seeds) else None
        return out

    def __getattr__(self, name: str) -> Any:
        # what a task reads of its model (e.g. ``decoder``) is the wrapped module's
        return getattr(self.module, name)


def batch_seed_coverage(seeds: Sequence[torch.Tensor], batch: Any) -> list[SceneSeedCoverage]:
    """Seed coverage of every scene of a batch (``pointformer.evaluation.seed_coverage``)."""
    return [scene_seed_coverage(s, t.token_instance, t.token_weight) for s, t in zip(seeds, batch.targets)]


class StudyTask:
    """The run's ``InstanceSegmentationTask`` (``inner``), observed: the model call is timed, and every
    validation scene's query diagnostics are kept for the :class:`StudyHook` (``take_diagnostics``).

    Training, predictions and metrics are the inner task's. ``inner`` is built with an
    ``assignment_timer`` (the criterion times its own assignment).
    """

    def __init__(self, inner: Any, device: torch.device) -> None:
        self.inner = inner
        self.model_time = Stopwatch(device)
        self.diagnostics: dict[str, SceneDiagnostics] = {}
        self.coverage: dict[str, SceneSeedCoverage] = {}       # validation scenes, at the evaluation count
        self.train_coverage: list[SceneSeedCoverage] = []      # training scenes since the last validation

    def training_loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        call = TimedCall(model, self.model_time)
        result = self.inner.training_loss(call, batch)
        if call.last_seeds is not None:
            self.train_coverage.extend(batch_seed_coverage(call.last_seeds, batch))
        return result

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, batch: Any) -> list[Any]:
        predictions = []
        call = TimedCall(model, Stopwatch(batch.xyz.device))
        scenes = self.inner.predict_instances(call, batch)
        if call.last_seeds is not None:
            for scene_id, coverage in zip(batch.scene_ids, batch_seed_coverage(call.last_seeds, batch)):
                self.coverage[scene_id] = coverage
        for b, (instances, point_tokens) in enumerate(scenes):
            predictions.append(instances.to_scene_prediction(point_tokens, self.inner.class_ids))
            target = batch.targets[b]
            self.diagnostics[batch.scene_ids[b]] = scene_diagnostics(
                instances.masks, instances.scores, instances.query_index, target.token_instance, target.token_weight)
        return predictions

    def evaluate(self, gt_ids: Sequence[np.ndarray], predictions: Sequence[Any],
                 scene_ids: Sequence[str]) -> dict[str, Any]:
        return self.inner.evaluate(gt_ids, predictions, scene_ids)

    def take_diagnostics(self) -> dict[str, SceneDiagnostics]:
        """The diagnostics of the scenes predicted since the last call (scene id -> diagnostics)."""
        taken, self.diagnostics = self.diagnostics, {}
        return taken

    def take_coverage(self) -> dict[str, Optional[float]]:
        """Seed coverage since the last call: of the validation scenes at the evaluation query count
        (``seed_coverage*``) and of the training batches (``train_seed_coverage*``, augmented scenes)."""
        val, self.coverage = list(self.coverage.values()), {}
        train, self.train_coverage = self.train_coverage, []
        out: dict[str, Optional[float]] = {}
        if val:   # none for learned queries
            out.update(summarize_seed_coverage(val))
        if train:
            out.update(summarize_seed_coverage(train, prefix="train_seed_coverage"))
        return out


class StudyHook(Hook):
    """The study's measurements of one run, as a trainer hook.

    After every step: the step's time split (``StepClock``). After every validation: duplicate and
    unmatched-GT rates, assignment stability since the previous validation, ``train_seconds`` and the
    time split join the validation metrics (so they reach the trainer's metrics.jsonl), and the
    evaluation is appended to ``evaluations.json`` (rewritten atomically) and printed as a JSON line.
    The clock, the evaluations and the last assignment are the hook's checkpointed state, so a resumed
    run continues them exactly. Single-process runs (diagnostics are collected per process).
    """

    name = "convergence_study"
    synchronise_timing = True   # the phases are the device's time on CUDA

    def __init__(self, *, task: StudyTask, assignment_timer: Stopwatch, run_dir: Path, meta: dict[str, Any]) -> None:
        self.task = task
        self.assignment_timer = assignment_timer
        self.run_dir = run_dir
        self.meta = dict(meta)
        self.clock = StepClock()
        self.evaluations: list[dict[str, Any]] = []
        self.assignment: Optional[dict[str, dict[str, int]]] = None   # of the latest evaluation

    def on_fit_start(self, trainer: Trainer) -> None:
        for handler in logging.getLogger("pointformer").handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)  # stdout carries the study's JSON lines; details go to train.log
        self.meta["parameters"] = int(sum(p.numel() for p in trainer.model.parameters()))
        self.task.model_time.reset()
        self.assignment_timer.reset()

    def after_step(self, trainer: Trainer, output: StepOutput) -> None:
        model = self.task.model_time.reset()
        self.clock.add_step(data=output.seconds["data"], model=model, loss=output.seconds["forward"] - model,
                            assign=self.assignment_timer.reset(), backward=output.seconds["backward"])

    def after_validation(self, trainer: Trainer, metrics: dict[str, Any]) -> dict[str, Any]:
        step = trainer.step
        diagnostics = self.task.take_diagnostics()
        current = assignment(diagnostics)
        stability = assignment_stability(self.assignment, current) if self.assignment is not None else {
            "assignment_stability": None, "assignment_retention": None}
        self.assignment = current
        # seed coverage where the task measures it (StudyTask; other tasks, e.g. the 2D study's, may not)
        take_coverage = getattr(self.task, "take_coverage", None)
        coverage = take_coverage() if take_coverage is not None else {}
        extra = {**summarize(list(diagnostics.values())), **stability, **coverage,
                 "train_seconds": self.clock.train_seconds, **self.clock.summary()}
        record = {"step": step, **{k: metrics[k] for k in ("map", "map50", "map25")}, **extra}
        self.evaluations = [r for r in self.evaluations if r["step"] < step] + [record]
        if trainer.dist.is_main:
            atomic_write_json(self.run_dir / "assignments" / f"step_{step:08d}.json", current)
            atomic_write_json(self.run_dir / "evaluations.json", {**self.meta, "evaluations": self.evaluations},
                              default=_json_default)
            emit("eval", variant=self.meta["variant"], seed=self.meta["seed"], **record)
        return extra

    def state_dict(self) -> dict[str, Any]:
        return {"clock": self.clock.state_dict(), "evaluations": list(self.evaluations),
                "assignment": self.assignment}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clock.load_state_dict(state["clock"])
        self.evaluations = list(state["evaluations"])
        self.assignment = state["assignment"]


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
    lr: Optional[float] = None      # the swept learning rate (None: the preset's)

    @property
    def name(self) -> str:
        """The run's variant as the report groups it: ``variant`` or ``variant@lr<lr>`` in an lr sweep."""
        return self.variant if self.lr is None else f"{self.variant}@lr{self.lr:g}"


def run_overrides(size: StudySize, variant: Variant, seed: int, data_root: Path, run_dir: Path, device: str,
                  data_config: str = "synthetic", batch_size: Optional[int] = None,
                  lr: Optional[float] = None) -> list[str]:
    """The Hydra overrides of one run: the preset, the variant, the data, the schedule and the run folder."""
    # the OneCycle schedule spans epochs x steps-per-epoch >= steps: it ends (almost) with the run
    batch_size = batch_size or _batch_size(size)
    epochs = math.ceil(size.steps / max(size.train_scenes // batch_size, 1))
    return [
        f"experiment={size.preset}", f"loss={variant.loss}", f"model.decoder.query_init={variant.query_init}",
        *variant.overrides, *([f"data={data_config}"] if data_config != "synthetic" else []), f"data.root={data_root}",
        f"run_dir={run_dir}", f"trainer.seed={seed}", f"trainer.device={device}",
        f"trainer.max_steps={size.steps}", f"trainer.epochs={epochs}",
        f"trainer.val_every_steps={size.eval_every}", f"trainer.checkpoint_every_steps={size.eval_every}",
        f"trainer.log_every={size.log_every}", "trainer.resume=auto",
        *size.overrides, *([f"trainer.lr={lr:g}"] if lr is not None else []),
    ]


def _batch_size(size: StudySize) -> int:
    from pointformer.config.compose import compose_config

    cfg = compose_config([f"experiment={size.preset}", *size.overrides])
    return int(cfg.trainer.batch_size)


def train_one(spec: RunSpec) -> dict[str, Any]:
    """Train (or continue) one run through ``run_training`` with the study's task and hook;
    returns its done.json payload."""
    torch.set_num_threads(spec.threads)
    from pointformer.build import dataset_class_ids, decoder_query_setup
    from pointformer.config import RunSettings, compose_config
    from pointformer.engine.distributed import DistInfo
    from pointformer.engine.run import run_training
    from pointformer.engine.task import InstanceSegmentationTask
    from pointformer.engine.trainer import resolve_device

    run_dir = Path(spec.run_dir)
    emit("run_started", variant=spec.name, seed=spec.seed, run_dir=spec.run_dir, pid=os.getpid())
    cfg = compose_config(list(spec.overrides))
    settings = RunSettings.from_config(cfg)
    device = resolve_device(settings.trainer.device, DistInfo())
    assignment_timer = Stopwatch(device)
    inner = InstanceSegmentationTask.from_settings(settings, class_ids=dataset_class_ids(settings),
                                                   assignment_timer=assignment_timer)
    task = StudyTask(inner, device)
    label = VARIANTS[spec.variant].label + ("" if spec.lr is None else f", lr {spec.lr:g}")
    meta = {"variant": spec.name, "label": label, "loss_variant": spec.variant, "lr": settings.trainer.lr,
            "seed": spec.seed,
            "fingerprint": spec.fingerprint, "loss": settings.loss.name,
            "query_init": decoder_query_setup(settings).query_init,
            "num_queries": int(settings.model.decoder["num_queries"]), "model": settings.model.name}
    hook = StudyHook(task=task, assignment_timer=assignment_timer, run_dir=run_dir, meta=meta)
    start = time.perf_counter()
    result = run_training(cfg, overrides=spec.overrides, hooks=[hook], task=task)
    elapsed = time.perf_counter() - start
    if result.step < settings.trainer.max_steps:
        raise RuntimeError(f"{run_dir}: stopped at step {result.step} of {settings.trainer.max_steps}")
    done = {**hook.meta, "step": result.step, "final": hook.evaluations[-1] if hook.evaluations else {},
            "process_seconds_last_session": elapsed, "resumed_from": result.resumed_from,
            "timing": hook.clock.summary(), "train_seconds": hook.clock.train_seconds, "device": str(device),
            "threads": spec.threads}
    atomic_write_json(run_dir / "done.json", done, default=_json_default)
    return done


def fingerprint(size: StudySize, variant: Variant, seed: int, device: str,
                external_data: Optional[str] = None, lr: Optional[float] = None) -> str:
    """What makes two runs the same run (not the output folder): preset, data, schedule, variant, seed
    (and the swept lr: the rest of the sweep is not part of a run)."""
    fields = {**asdict(size), "variants": None, "seeds": None}
    fields.pop("lrs")             # a run's own lr is its key below; the rest of the sweep is not
    fields.pop("variant_lrs")
    if fields["scene_preset"] == "basic":
        del fields["scene_preset"]  # absent when default: the recorded studies keep their fingerprints
    variant_fields = asdict(variant)
    if not variant_fields["overrides"]:
        del variant_fields["overrides"]   # absent when empty: the recorded studies keep their fingerprints
    key = {"size": fields, "variant": variant_fields, "seed": seed, "device": device}
    if lr is not None:
        key["lr"] = lr
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
            for lr in size.lrs_of(name):
                run_name = name if lr is None else f"{name}@lr{lr:g}"
                run_dir = out / "runs" / run_name / f"seed{seed}"
                specs.append(RunSpec(variant=name, seed=seed, run_dir=str(run_dir), threads=threads, lr=lr,
                                     overrides=tuple(run_overrides(size, variant, seed, data_root, run_dir, device,
                                                                   data_config, batch_size, lr)),
                                     fingerprint=fingerprint(size, variant, seed, device,
                                                             f"{data_config}:{data_root}" if external else None,
                                                             lr)))
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
            emit("run_skipped", variant=spec.name, seed=spec.seed, reason="finished", final=done.get("final"))
        else:
            todo.append(spec)
    atomic_write_json(out / "study.json", {"size": asdict(size), "device": device, "jobs": jobs, "threads": threads,
                                           "data_root": str(data_root), "runs": [asdict(s) for s in specs],
                                           "torch": torch.__version__, "cpu_count": os.cpu_count()},
                      default=_json_default)
    if jobs <= 1 or len(todo) <= 1:
        for spec in todo:
            done = train_one(spec)
            emit("run_finished", variant=spec.name, seed=spec.seed, final=done["final"], timing=done["timing"])
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {}
            for spec in todo:
                emit("run_queued", variant=spec.name, seed=spec.seed, run_dir=spec.run_dir)
                futures[pool.submit(train_one, spec)] = spec  # workers print on the shared stdout
            for future in as_completed(futures):
                spec = futures[future]
                done = future.result()
                emit("run_finished", variant=spec.name, seed=spec.seed, final=done["final"], timing=done["timing"])
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
    size = SIZES["quick" if args.quick else "full" if args.full else args.size]
    changes: dict[str, Any] = {}
    if args.lrs:
        changes["lrs"] = tuple(float(v) for v in args.lrs.split(",") if v.strip())
    if args.lr_for:
        pairs = []
        for item in args.lr_for:
            name, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--lr-for expects VARIANT=LR, got {item!r}")
            pairs.append((name.strip(), float(value)))
        changes["variant_lrs"] = tuple(pairs)
    if args.scene_preset:
        changes["scene_preset"] = args.scene_preset
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
    if args.lr_from_sweep:
        out = args.out or DEFAULT_OUT
        chosen = _report_module().choose_lrs(out)
        variants = changes.get("variants", size.variants)
        missing = [v for v in variants if v not in chosen]
        if missing:
            raise ValueError(f"--lr-from-sweep: no finished sweep run in {out}/runs for {missing}")
        changes["variant_lrs"] = tuple((v, chosen[v]) for v in variants)
    size = replace(size, **changes)
    size.validate()
    return size


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="two short runs on tiny scenes (the test)")
    which.add_argument("--full", action="store_true", help="GPU setting: ScanNet-sized scenes, Mask3D-size model")
    which.add_argument("--size", default="default", choices=sorted(SIZES),
                       help="a named setting of SIZES (default: default); scannet_scale = the ScanNet-scale study")
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
    parser.add_argument("--lrs", default=None, help="comma-separated learning rates to sweep (one run per variant, "
                        "lr and seed; run folders runs/<variant>@lr<lr>/seed<k>)")
    parser.add_argument("--lr-for", action="append", default=[], metavar="VARIANT=LR",
                        help="run VARIANT at LR only (repeatable; e.g. the lr a sweep chose, for more seeds)")
    parser.add_argument("--lr-from-sweep", action="store_true",
                        help="run every variant at the lr its finished sweep runs in OUT did best with (highest "
                             "final mAP50 of the sweep seed; convergence_report.choose_lrs)")
    parser.add_argument("--scene-preset", default=None, choices=("basic", "scannet"),
                        help="generator preset of the synthetic scenes (pointformer synth scannet --preset)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--no-report", action="store_true", help="train only; write the report later with "
                        "benchmarks/convergence_report.py OUT")
    args = parser.parse_args(argv)
    if (args.quick or args.full or args.size != "default") and args.out is None:
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
