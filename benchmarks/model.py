"""Speed and memory of the 3D model (``tiny`` and ``base`` configs) on one indoor-like scene.

For every (config, backend): forward (eval mode, no grad, the eval query count) and forward+backward
(train mode, the train query count, a proxy loss over every decoder stage) — wall time (minimum and
median of ``--repeat`` runs after one warm-up), peak memory, and the share of backbone (voxelize + Res16UNet) /
pooling (gather per point + superpoint mean) / decoder. Each (config, backend, mode) runs in a fresh
subprocess so that its peak memory is its own: on CPU the increase of the peak RSS (VmHWM, reset
after the setup) over the model+data baseline, on CUDA ``torch.cuda.max_memory_allocated``.

The scene: ``pointformer.data.toy`` room (floor, two walls, boxes) with ~100k points; superpoints
are grid cells taken per object, the cell size tuned to give ~2k superpoints (ScanNet scenes have
~100-150k vertices and ~1-3k segmentator superpoints).

The loss is a proxy (mean of squared logits of every stage); the real criteria are benchmarked with
the losses. ``--loss`` only chooses the decoder setup that loss declares (mask activation and query
initialisation, ``pointformer.losses.query_setup``; default ``influencer``: ownership, seeded).
Prints one JSON line per measurement.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/model.py [--configs tiny base] [--backends torch minkowski]
                                                           [--loss influencer]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

from pointformer.data.toy import make_toy_scene
from pointformer.losses import query_setup
from pointformer.models.build import build_model, load_model_config
from pointformer.models.segmentor import InstanceSegmentor3D, PointBatch
from pointformer.models.tokens import superpoint_tokens
from pointformer.sparse.voxelize import voxelize


def make_scene(num_points: int, num_superpoints: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(xyz [P,3] centred, colour features [P,3] in [-1,1], superpoint [P]) of one room."""
    # make_toy_scene returns roughly the requested count; ask for more and keep exactly num_points
    scene = make_toy_scene("bench", seed=seed, num_points=int(num_points * 1.2), num_objects=9)
    keep = np.sort(np.random.default_rng(seed).permutation(scene.num_points)[:num_points])
    xyz = scene.xyz[keep].astype(np.float64)
    part = scene.instance[keep].astype(np.int64) * 100 + scene.semantic[keep].astype(np.int64) + 1

    def segment(cell: float) -> np.ndarray:
        grid = np.floor(xyz / cell).astype(np.int64)
        keys = np.stack([part, grid[:, 0], grid[:, 1], grid[:, 2]], 1)
        return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)

    low, high = 0.02, 1.0  # bisection on the cell size: fewer superpoints for larger cells
    for _ in range(14):
        mid = (low + high) / 2
        if segment(mid).max() + 1 > num_superpoints:
            low = mid
        else:
            high = mid
    sp = segment(high)
    colour = scene.rgb[keep].astype(np.float32) / 127.5 - 1.0
    return (torch.from_numpy((xyz - xyz.mean(0)).astype(np.float32)), torch.from_numpy(colour),
            torch.from_numpy(sp.astype(np.int64)))


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) so that the setup's peak does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # never reset: an upper bound


def proxy_loss(layers: Any) -> torch.Tensor:
    total = 0.0
    for layer in layers:
        tensors = layer.class_logits + layer.mask_logits + (layer.background_logits or [])
        total = total + sum(t.float().pow(2).mean() for t in tensors)
    return total


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def staged_step(model: InstanceSegmentor3D, batch: PointBatch, device: torch.device, *,
                train: bool) -> dict[str, float]:
    """One forward (eval: no grad) or forward+backward (train) timed per stage. For the backward, the
    stages are cut at detached leaves and backpropagated one by one (decoder, pooling, backbone), so
    each stage's forward + backward is measured."""
    clock = []

    def tick() -> None:
        sync(device)
        clock.append(time.perf_counter())

    with torch.set_grad_enabled(train):
        tick()
        sparse, p2v = voxelize(batch.xyz, batch.features, batch.batch_index(), model.voxel_size)
        voxel_features = model.backbone(sparse).features.feats
        tick()
        voxel_leaf = voxel_features.detach().requires_grad_(train)
        tokens = superpoint_tokens(voxel_leaf.index_select(0, p2v), batch.xyz, batch.superpoint, batch.token_offsets)
        tick()
        pooled = tokens.features
        tokens.features = pooled.detach().requires_grad_(train)
        layers = model.decoder(tokens).layers
        if train:
            proxy_loss(layers).backward()
        tick()
    if not train:
        return {"backbone": clock[1] - clock[0], "pooling": clock[2] - clock[1], "decoder": clock[3] - clock[2]}
    pooled.backward(tokens.features.grad)
    tick()
    voxel_features.backward(voxel_leaf.grad)
    tick()
    model.zero_grad(set_to_none=True)
    return {"backbone": (clock[1] - clock[0]) + (clock[5] - clock[4]),
            "pooling": (clock[2] - clock[1]) + (clock[4] - clock[3]),
            "decoder": clock[3] - clock[2]}


def run_single(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = load_model_config(args.single_config)
    cfg.backbone.backend = args.single_backend
    setup = query_setup(args.loss)
    model = build_model(cfg, mask_activation=setup.mask_activation, query_init=setup.query_init).to(device)
    xyz, colour, sp = make_scene(args.points, args.superpoints)
    batch = PointBatch.from_scenes([(xyz, colour, sp)]).to(device)
    mode = args.single_mode
    model.train(mode == "train")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated()
    gc.collect()
    reset_peak_rss()
    rss0 = current_rss_bytes()
    info: dict[str, int] = {}

    def full() -> float:
        sync(device)
        t = time.perf_counter()
        if mode == "train":
            out = model(batch)
            proxy_loss(out.layers).backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                out = model(batch)
        sync(device)
        info.update(voxels=out.num_voxels, superpoints=out.tokens.num_tokens, queries=out.query_seed_token[0].numel())
        return time.perf_counter() - t

    full()  # warm-up (kernel maps, allocator)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base_mem
    else:
        peak = peak_rss_bytes() - rss0
    totals = [full() for _ in range(args.repeat)]
    stages: dict[str, list[float]] = {"backbone": [], "pooling": [], "decoder": []}
    for _ in range(args.repeat):
        for k, v in staged_step(model, batch, device, train=mode == "train").items():
            stages[k].append(v)
    # On a shared machine the minimum is the least disturbed run; the median is reported next to it.
    best = {k: min(v) for k, v in stages.items()}
    staged_total = sum(best.values())
    print(json.dumps({
        "config": args.single_config, "backend": args.single_backend, "mode": mode, "device": str(device),
        "loss": args.loss, "threads": args.threads, "points": int(xyz.shape[0]), **info,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "time_min_s": round(min(totals), 3), "time_median_s": round(statistics.median(totals), 3),
        "time_runs_s": [round(t, 3) for t in totals], "peak_mem_MB": round(peak / 2**20, 1),
        "stage_min_s": {k: round(v, 3) for k, v in best.items()},
        "stage_share": {k: round(v / staged_total, 3) for k, v in best.items()},
    }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "base"])
    parser.add_argument("--backends", nargs="+", default=None, help="default: torch, plus minkowski if installed")
    parser.add_argument("--modes", nargs="+", default=["forward", "train"], choices=["forward", "train"])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--superpoints", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--loss", default="influencer", help="the loss whose decoder setup the model gets")
    parser.add_argument("--single-config", help=argparse.SUPPRESS)
    parser.add_argument("--single-backend", help=argparse.SUPPRESS)
    parser.add_argument("--single-mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single_config:
        run_single(args)
        return
    backends = args.backends
    if backends is None:
        from pointformer.sparse.backends import minkowski_available

        backends = ["torch"] + (["minkowski"] if minkowski_available() else [])
        if len(backends) == 1:
            print(json.dumps({"note": "MinkowskiEngine not installed: torch backend only (make minkowski)"}),
                  flush=True)
    for config in args.configs:
        for backend in backends:
            for mode in args.modes:
                cmd = [sys.executable, __file__, "--single-config", config, "--single-backend", backend,
                       "--single-mode", mode, "--points", str(args.points), "--superpoints", str(args.superpoints),
                       "--repeat", str(args.repeat), "--threads", str(args.threads), "--device", args.device,
                       "--loss", args.loss]
                result = subprocess.run(cmd, capture_output=True, text=True)
                if result.returncode != 0:
                    print(json.dumps({"config": config, "backend": backend, "mode": mode,
                                      "error": result.stderr.strip().splitlines()[-1:]}), flush=True)
                else:
                    sys.stdout.write(result.stdout)
                    sys.stdout.flush()


if __name__ == "__main__":
    main()
