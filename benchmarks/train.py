"""Training throughput of the tiny and base models: seconds per optimiser step (wall clock and
process CPU time, which stays meaningful on a machine shared with other work), scenes per second,
peak memory — the full training step (data loading + augmentation + collation, forward, Influencer
Loss over every decoder stage, backward, gradient clipping, AdamW) via the real Trainer.

Each configuration runs in its own process (so peak RSS belongs to it alone) on synthetic
ScanNet-format rooms generated and preprocessed once into a cache folder.

    .venv/bin/python benchmarks/train.py                       # tiny + base, JSON lines on stdout
    .venv/bin/python benchmarks/train.py --models tiny --vertices 8000 --steps 8
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _prepare(cache: Path, vertices: int, scenes: int) -> Path:
    from pointformer.preprocess.scannet import preprocess_scannet
    from pointformer.synthetic.scannet import generate_scannet

    root = cache / f"v{vertices}_n{scenes}"
    if not (root / "pre" / "train" / "manifest.json").is_file():
        generate_scannet(root / "raw", num_scenes=scenes, num_test_scenes=0, seed=0, target_vertices=vertices,
                         val_fraction=0.0)
        summary = preprocess_scannet(root / "raw", root / "pre", workers=1, progress=False)
        if not summary.ok:
            raise RuntimeError(summary.format())
    return root / "pre"


def _single(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from pointformer.config.compose import compose_config
    from pointformer.engine.metrics_log import read_metrics
    from pointformer.engine.run import run_training

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        steps = args.warmup + args.steps
        cfg = compose_config([
            f"model={args.single}", f"data.root={args.root}", f"run_dir={run_dir}", "data.val_split=null",
            f"trainer.batch_size={args.batch}", "trainer.epochs=1000", f"trainer.max_steps={steps}",
            "trainer.log_every=1", "trainer.progress=false", "trainer.tensorboard=false", "trainer.num_workers=0",
            "trainer.val_every_epochs=0", "trainer.checkpoint_every_epochs=0", "trainer.checkpoint_every_steps=1000000",
            "trainer.lr=1e-4", "data.cache=true"])
        start = time.perf_counter()
        run_training(cfg)
        wall = time.perf_counter() - start
        records = read_metrics(run_dir / "metrics.jsonl", "train")[args.warmup:]
    s_per_step = sum(r["s_per_step"] for r in records) / len(records)
    cpu_s_per_step = sum(r["cpu_s_per_step"] for r in records) / len(records)
    print(json.dumps({
        "bench": "train_step", "model": args.single, "backend": "torch", "device": "cpu", "threads": args.threads,
        "batch_scenes": args.batch, "vertices_per_scene": args.vertices,
        "measured_steps": len(records), "s_per_step": round(s_per_step, 3),
        "cpu_s_per_step": round(cpu_s_per_step, 3), "scenes_per_cpu_s": round(args.batch / cpu_s_per_step, 3),
        "scenes_per_s": round(args.batch / s_per_step, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3),
        "total_wall_s": round(wall, 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "base"])
    parser.add_argument("--vertices", type=int, nargs="+", default=[8000, 50000])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default="benchmarks/results/tmp/train_scenes")
    parser.add_argument("--single", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        args.vertices = args.vertices[0]
        _single(args)
        return
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    for vertices in args.vertices:
        root = _prepare(cache, vertices, scenes=max(args.batch * 2, 4))
        for model in args.models:
            cmd = [sys.executable, __file__, "--single", model, "--root", str(root), "--vertices", str(vertices),
                   "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--threads", str(args.threads)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                print(json.dumps({"bench": "train_step", "model": model, "vertices_per_scene": vertices,
                                  "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}), flush=True)
            else:
                print(lines[-1], flush=True)


if __name__ == "__main__":
    main()
