"""The convergence study in 2D: Influencer Loss against Hungarian / greedy matching on images.

The 2D counterpart of ``benchmarks/convergence.py``, reusing its pieces (imported, not copied): the
variants (``VARIANTS``), the trainer hook that times every step and records every evaluation with
its query diagnostics (``StudyHook``, ``StepClock``, ``TimedCall``), the JSON-lines log (``emit``) and
the report (``convergence_report.write_report``: curves.csv, table.md/csv, summary.json, plots).
Each (variant, seed) run trains the ``image_tiny`` model through ``pointformer.image.run`` (the 2D
composition root of ``pointformer train``) on synthetic COCO-format shapes
(``pointformer.image.synthetic``) with identical schedules, and evaluates COCO segm AP on the held-out
split every ``--eval-every`` steps. In the report's columns ``map`` is COCO AP (IoU .50:.95) and
``map50`` COCO AP50; COCO has no AP25 (that column is empty); AP75 is in each run's metrics.jsonl.

    .venv/bin/python benchmarks/convergence_2d.py --jobs 2          # the recorded CPU study (<= 15 min)
    .venv/bin/python benchmarks/convergence_2d.py --quick --out /tmp/c2d   # two short runs
    .venv/bin/python benchmarks/convergence_2d.py --variants influencer --tokens pixel \\
        --out benchmarks/results/convergence/image/tokens_pixel --jobs 2    # the token comparison

Resumable as the 3D study: finished runs (``done.json``) are skipped, interrupted ones continue from
their last checkpoint; a folder holding a run of other settings is an error.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling study modules (benchmarks/ is no package)
from convergence import VARIANTS, StudyHook, TimedCall, emit  # noqa: E402

from pointformer.evaluation.query_diagnostics import SceneDiagnostics, scene_diagnostics  # noqa: E402
from pointformer.io.atomic import atomic_write_json  # noqa: E402
from pointformer.timing import Stopwatch  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "convergence" / "image"
STUDY_VARIANTS = ("influencer", "influencer_sigmoid", "hungarian", "greedy")


@dataclass(frozen=True)
class ImageStudySize:
    """Data, schedule and tokens of one 2D study setting."""

    train_images: int
    val_images: int
    image_size: int
    steps: int
    eval_every: int
    log_every: int
    batch_size: int
    seeds: tuple[int, ...]
    variants: tuple[str, ...]
    tokens: str = "superpixel"      # the default of configs/data/coco.yaml (the token comparison chose it)
    data_seed: int = 0
    overrides: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.train_images < self.batch_size or self.val_images < 1:
            raise ValueError(f"need >= batch_size train images and >= 1 val image, got {self.train_images} / "
                             f"{self.val_images}")
        if self.steps < 1 or self.eval_every < 1 or self.eval_every % self.log_every:
            raise ValueError(f"steps and eval_every must be positive and eval_every a multiple of log_every "
                             f"(got {self.steps}, {self.eval_every}, {self.log_every})")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; available: {sorted(VARIANTS)}")
        if self.tokens not in ("pixel", "superpixel"):
            raise ValueError(f"tokens must be pixel or superpixel, got {self.tokens!r}")


SIZES = {
    "quick": ImageStudySize(train_images=8, val_images=4, image_size=48, steps=6, eval_every=3, log_every=1,
                            batch_size=2, seeds=(0,), variants=("influencer", "hungarian"),
                            overrides=("model.decoder.num_layers=1",)),
    # the recorded CPU study: 12 runs in about 15 minutes with --jobs 2 on the shared 2-core machine
    # (a first try with 300 steps ran 6 min per run there: other jobs held the cores at load 8)
    "default": ImageStudySize(train_images=96, val_images=24, image_size=64, steps=150, eval_every=50,
                              log_every=10, batch_size=4, seeds=(0, 1, 2), variants=STUDY_VARIANTS),
}


# ----------------------------------------------------------------------------------------- the task
class ImageStudyTask:
    """The run's ``ImageSegmentationTask`` (``inner``), observed like the 3D study's ``StudyTask``: the
    model call is timed, and every validation image's query diagnostics are kept for ``StudyHook``.
    Its metrics add the names the study's hook and report read: ``map`` = COCO AP, ``map50`` = AP50,
    ``map25`` = NaN (COCO has no AP25)."""

    def __init__(self, inner: Any, device: torch.device) -> None:
        self.inner = inner
        self.model_time = Stopwatch(device)
        self.diagnostics: dict[str, SceneDiagnostics] = {}

    def training_loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        return self.inner.training_loss(TimedCall(model, self.model_time), batch)

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, batch: Any) -> list[Any]:
        from pointformer.image.predictor import image_prediction, predict_image_instances
        from pointformer.image.task import batch_targets

        out, instances = predict_image_instances(model, batch, self.inner.postprocessor, seed=self.inner.eval_seed)
        targets = batch_targets(out, batch)
        predictions = []
        for b, sample in enumerate(batch.samples):
            predictions.append(image_prediction(instances[b], out.token_maps[b], sample))
            self.diagnostics[batch.scene_ids[b]] = scene_diagnostics(
                instances[b].masks, instances[b].scores, instances[b].query_index, targets[b].token_instance,
                targets[b].token_weight)
        return predictions

    def evaluate(self, gt_ids: Sequence[Any], predictions: Sequence[Any], scene_ids: Sequence[str]) -> dict[str, Any]:
        metrics = self.inner.evaluate(gt_ids, predictions, scene_ids)
        return {**metrics, "map": metrics["ap"], "map50": metrics["ap50"], "map25": math.nan}

    def take_diagnostics(self) -> dict[str, SceneDiagnostics]:
        taken, self.diagnostics = self.diagnostics, {}
        return taken


# ----------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class ImageRunSpec:
    variant: str
    seed: int
    run_dir: str
    overrides: tuple[str, ...]
    threads: int
    fingerprint: str


def run_overrides(size: ImageStudySize, variant: str, seed: int, data_root: Path, run_dir: Path,
                  device: str) -> list[str]:
    """The Hydra overrides of one run (the OneCycle schedule ends with the run)."""
    from pointformer.image.settings import ranked_class_overrides

    epochs = math.ceil(size.steps / max(size.train_images // size.batch_size, 1))
    v = VARIANTS[variant]
    num_classes = 4  # pointformer.image.synthetic draws 4 shape classes
    return ["experiment=demo_2d", f"loss={v.loss}", f"model.decoder.query_init={v.query_init}",
            f"data.root={data_root}", f"data.image_size={size.image_size}", f"data.tokens={size.tokens}",
            f"run_dir={run_dir}", f"trainer.seed={seed}", f"trainer.device={device}",
            f"trainer.batch_size={size.batch_size}", f"trainer.max_steps={size.steps}", f"trainer.epochs={epochs}",
            "trainer.val_every_epochs=0", f"trainer.val_every_steps={size.eval_every}",
            "trainer.checkpoint_every_epochs=0", f"trainer.checkpoint_every_steps={size.eval_every}",
            f"trainer.log_every={size.log_every}", "trainer.keep_last=1", "trainer.resume=auto",
            "trainer.progress=false", "model.decoder.eval_num_queries=${model.decoder.num_queries}",
            *ranked_class_overrides(v.loss, num_classes), *size.overrides]


def fingerprint(size: ImageStudySize, variant: str, seed: int, device: str) -> str:
    key = json.dumps({"size": {**asdict(size), "variants": None, "seeds": None}, "variant": variant, "seed": seed,
                      "device": device}, sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def train_one(spec: ImageRunSpec) -> dict[str, Any]:
    """Train (or continue) one run through ``run_image_training`` with the study's task and hook."""
    torch.set_num_threads(spec.threads)
    from pointformer.config import compose_config
    from pointformer.engine.distributed import DistInfo
    from pointformer.engine.trainer import resolve_device
    from pointformer.image.build import make_image_dataset
    from pointformer.image.run import run_image_training
    from pointformer.image.settings import ImageRunSettings
    from pointformer.image.task import ImageSegmentationTask
    from pointformer.losses import query_setup

    run_dir = Path(spec.run_dir)
    emit("run_started", variant=spec.variant, seed=spec.seed, run_dir=spec.run_dir, pid=os.getpid())
    cfg = compose_config(list(spec.overrides))
    settings = ImageRunSettings.from_config(cfg)
    device = resolve_device(settings.trainer.device, DistInfo())
    assignment_timer = Stopwatch(device)
    val = make_image_dataset(settings.data, settings.data.val_split or "val", train=False, seed=0)
    inner = ImageSegmentationTask.from_settings(settings, coco_gt=val.coco,
                                                class_to_category_id=val.class_to_category_id,
                                                assignment_timer=assignment_timer)
    task = ImageStudyTask(inner, device)
    meta = {"variant": spec.variant, "label": VARIANTS[spec.variant].label, "seed": spec.seed,
            "fingerprint": spec.fingerprint, "loss": settings.loss.name,
            "query_init": query_setup(settings.loss.name, settings.model.decoder.get("query_init")).query_init,
            "num_queries": int(settings.model.decoder["num_queries"]), "model": settings.model.name,
            "tokens": settings.data.tokens, "image_size": settings.data.image_size}
    hook = StudyHook(task=task, assignment_timer=assignment_timer, run_dir=run_dir, meta=meta)  # type: ignore[arg-type]
    start = time.perf_counter()
    result = run_image_training(cfg, overrides=spec.overrides, hooks=[hook], task=task)
    elapsed = time.perf_counter() - start
    if result.step < (settings.trainer.max_steps or 0):
        raise RuntimeError(f"{run_dir}: stopped at step {result.step} of {settings.trainer.max_steps}")
    final_ap75 = result.last_val.get("ap75")
    done = {**hook.meta, "step": result.step, "final": hook.evaluations[-1] if hook.evaluations else {},
            "final_ap75": final_ap75, "process_seconds_last_session": elapsed, "resumed_from": result.resumed_from,
            "timing": hook.clock.summary(), "train_seconds": hook.clock.train_seconds, "device": str(device),
            "threads": spec.threads}
    atomic_write_json(run_dir / "done.json", done, default=_plain)
    return done


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


def prepare_data(out: Path, size: ImageStudySize) -> Path:
    """Generate (once) the synthetic shapes of the study; returns the data root."""
    from pointformer.image.synthetic import generate_shapes2d

    root = out / "data" / f"shapes{size.image_size}_{size.train_images}_{size.val_images}_seed{size.data_seed}"
    stamp = root / "READY.json"
    if stamp.is_file():
        emit("data", root=root, cached=True)
        return root
    start = time.perf_counter()
    result = generate_shapes2d(root, num_images=size.train_images, num_val_images=size.val_images,
                               seed=size.data_seed, size=size.image_size)
    info = {"train_images": size.train_images, "val_images": size.val_images, "image_size": size.image_size,
            "splits": {k: str(v) for k, v in result.splits.items()}, "seconds": time.perf_counter() - start}
    atomic_write_json(stamp, info)
    emit("data", root=root, cached=False, **{k: v for k, v in info.items() if k != "splits"})
    return root


def run_study(out: Path, size: ImageStudySize, *, device: str = "cpu", jobs: int = 1, threads: int = 1,
              report: bool = True) -> dict[str, Any]:
    size.validate()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data_root = prepare_data(out, size)
    specs = []
    for seed in size.seeds:  # seed-major: a cut-short study has every variant at its first seeds
        for variant in size.variants:
            run_dir = out / "runs" / variant / f"seed{seed}"
            specs.append(ImageRunSpec(variant=variant, seed=seed, run_dir=str(run_dir), threads=threads,
                                      overrides=tuple(run_overrides(size, variant, seed, data_root, run_dir, device)),
                                      fingerprint=fingerprint(size, variant, seed, device)))
    todo = []
    for spec in specs:
        for name in ("done.json", "evaluations.json"):
            path = Path(spec.run_dir) / name
            if path.is_file() and json.loads(path.read_text()).get("fingerprint") != spec.fingerprint:
                raise ValueError(f"{spec.run_dir} holds a run of different settings; use another --out or delete it")
        if (Path(spec.run_dir) / "done.json").is_file():
            emit("run_skipped", variant=spec.variant, seed=spec.seed, reason="finished")
        else:
            todo.append(spec)
    atomic_write_json(out / "study.json", {"size": asdict(size), "device": device, "jobs": jobs, "threads": threads,
                                           "data_root": str(data_root), "runs": [asdict(s) for s in specs],
                                           "torch": torch.__version__, "cpu_count": os.cpu_count()}, default=_plain)
    if jobs <= 1 or len(todo) <= 1:
        for spec in todo:
            done = train_one(spec)
            emit("run_finished", variant=spec.variant, seed=spec.seed, final=done["final"], timing=done["timing"])
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(train_one, spec): spec for spec in todo}
            for future in as_completed(futures):
                spec = futures[future]
                done = future.result()
                emit("run_finished", variant=spec.variant, seed=spec.seed, final=done["final"], timing=done["timing"])
    summary: dict[str, Any] = {"out": str(out), "runs": len(specs), "trained": len(todo),
                               "wall_seconds": round(time.perf_counter() - start, 1)}
    if report:
        import convergence_report

        summary["report"] = convergence_report.write_report(out)
    atomic_write_json(out / "wall_clock.json", summary, default=_plain)
    emit("study_finished", **summary)
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two short runs on tiny images (the test)")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--variants", default=None, help=f"comma-separated subset of {','.join(STUDY_VARIANTS)}")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--val-images", type=int, default=None)
    parser.add_argument("--tokens", default=None, choices=("pixel", "superpixel"))
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        parser.error("--quick writes elsewhere than the recorded study: pass --out")
    size = SIZES["quick" if args.quick else "default"]
    changes: dict[str, Any] = {}
    if args.variants:
        changes["variants"] = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if args.seeds:
        changes["seeds"] = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    for key in ("steps", "eval_every", "image_size", "train_images", "val_images", "tokens"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if "eval_every" in changes:
        changes["log_every"] = math.gcd(changes["eval_every"], size.log_every)
    if args.override:
        changes["overrides"] = size.overrides + tuple(args.override)
    size = replace(size, **changes)
    try:
        run_study(args.out or DEFAULT_OUT, size, device=args.device, jobs=args.jobs, threads=args.threads,
                  report=not args.no_report)
    except ValueError as exc:
        print(f"convergence_2d: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
