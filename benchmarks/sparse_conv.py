"""Sparse-convolution benchmark: every installed backend side by side on one indoor-like scene.

    python benchmarks/sparse_conv.py [--voxels 100000] [--threads 2] [--repeats 5] [--skip-backbone]

Scene: a room at 2 cm voxels made of surfaces (floor, four walls, a table, boxes, a shelf), not a
random cloud, so neighbourhoods look like a real scan (about 9 of 27 neighbours occupied).
Measured per backend: one 3x3x3 64->64 submanifold conv forward with the kernel map cached, forward
including the map build, forward+backward; Res16UNet34C forward+backward (train mode) on the same
scene with 3 colour channels. Plus the machine's dense GEMM rate and the fraction of it the conv
reaches. Output: one JSON object per line.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch

from pointformer.sparse import KernelMapCache, SparseTensor, minkowski_available, set_backend
from pointformer.sparse.nn import SubmanifoldConv3d


def room_scene(target_voxels: int, voxel: float = 0.02, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxel coordinates int32 [N, 4] (batch 0) of a furnished room with about ``target_voxels`` voxels,
    and colours float [N, 3]. The room is scaled so the surface area matches the target."""
    gen = torch.Generator().manual_seed(seed)
    # Surfaces as axis-aligned rectangles (origin, u extent, v extent, normal axis) in metres,
    # for a 1 m reference room; scaled by s so that area ~ target * voxel^2.
    def rects(s: float) -> list[tuple[tuple[float, float, float], int, float, int, float]]:
        w, d, h = 5.0 * s, 4.0 * s, 2.6
        r = [((0, 0, 0), 0, w, 1, d), ((0, 0, 0), 0, w, 2, h), ((0, d, 0), 0, w, 2, h),
             ((0, 0, 0), 1, d, 2, h), ((w, 0, 0), 1, d, 2, h)]
        for i in range(int(3 * s) + 1):  # tables and boxes spread over the floor
            x0, y0 = 0.5 + (i * 1.7) % (w - 1.5), 0.5 + (i * 1.3) % (d - 1.2)
            r += [((x0, y0, 0.75), 0, 1.2, 1, 0.8), ((x0, y0, 0.0), 0, 1.2, 2, 0.75),
                  ((x0 + 0.2, y0 + 0.2, 0.0), 0, 0.4, 2, 0.45), ((x0 + 0.2, y0 + 0.2, 0.45), 0, 0.4, 1, 0.4)]
        return r

    def area(rs: list) -> float:
        return sum(a * b for _, _, a, _, b in rs)

    s = 1.0
    for _ in range(30):  # solve area(s) = target * voxel^2
        s *= math.sqrt(target_voxels * voxel * voxel / area(rects(s)))
    keys = []
    for origin, ua, ul, va, vl in rects(s):
        nu, nv = max(1, int(ul / voxel)), max(1, int(vl / voxel))
        uu, vv = torch.meshgrid(torch.arange(nu), torch.arange(nv), indexing="ij")
        c = torch.zeros((nu * nv, 3), dtype=torch.int64)
        c += torch.tensor([int(o / voxel) for o in origin])
        c[:, ua] += uu.reshape(-1)
        c[:, va] += vv.reshape(-1)
        # a little thickness noise, like a real scan
        normal = 3 - ua - va
        c[:, normal] += (torch.rand(c.shape[0], generator=gen) < 0.15).long()
        keys.append(c)
    coords = torch.unique(torch.cat(keys), dim=0)
    coords = torch.cat([torch.zeros((coords.shape[0], 1), dtype=torch.int64), coords], 1).to(torch.int32)
    colours = torch.rand((coords.shape[0], 3), generator=gen)
    return coords, colours


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def gemm_rate(repeats: int) -> float:
    """Dense float32 GEMM rate of this machine in FLOP/s (2048^3, best of ``repeats``)."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = timeit(lambda: a @ b, repeats)["min_s"]
    return 2 * n ** 3 / t


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voxels", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--backbone-repeats", type=int, default=2)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--skip-backbone", action="store_true")
    p.add_argument("--backends", default="all", help="comma list of torch,minkowski (default: every installed)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backends = ["torch"] + (["minkowski"] if minkowski_available() else [])
    if args.backends != "all":
        backends = [b for b in args.backends.split(",") if b in backends]
    coords, colours = room_scene(args.voxels)
    emit({"record": "machine", "platform": platform.platform(), "cpu_count": os.cpu_count(),
          "torch": torch.__version__, "threads": args.threads, "backends": backends,
          "python": sys.version.split()[0]})
    rate = gemm_rate(args.repeats)
    emit({"record": "dense_gemm", "n": 2048, "gflops": rate / 1e9})

    c = args.channels
    feats = torch.randn((coords.shape[0], c))
    probe = SparseTensor(coords, feats)
    kmap = probe.cache.submanifold_map(1, 3, 1)
    pairs = kmap.num_pairs
    flops = 2.0 * pairs * c * c
    emit({"record": "scene", "voxels": int(coords.shape[0]), "kernel_pairs": pairs,
          "mean_neighbours": pairs / coords.shape[0], "conv_gflop": flops / 1e9})

    for backend in backends:
        conv = SubmanifoldConv3d(in_channels=c, out_channels=c, kernel_size=3, backend=backend)
        cached = SparseTensor(coords, feats)
        with torch.no_grad():
            conv(cached)  # builds and caches the map (and the backend's own state)
            fwd = timeit(lambda: conv(cached), args.repeats)
            fwd_nocache = timeit(lambda: conv(SparseTensor(coords, feats, 1, KernelMapCache())), args.repeats)
        feats_g = feats.clone().requires_grad_(True)
        x_g = SparseTensor(coords, feats_g)

        def step() -> None:
            conv.zero_grad(set_to_none=True)
            feats_g.grad = None
            conv(x_g).feats.sum().backward()

        fb = timeit(step, args.repeats)
        emit({"record": "conv3x3x3", "backend": backend, "channels": c,
              "forward_cached_s": fwd["median_s"], "forward_with_map_build_s": fwd_nocache["median_s"],
              "forward_backward_s": fb["median_s"],
              "forward_gflops": flops / fwd["min_s"] / 1e9,
              "forward_fraction_of_gemm": flops / fwd["min_s"] / rate,
              "forward_backward_fraction_of_gemm": 3 * flops / fb["min_s"] / rate})

    if not args.skip_backbone:
        from pointformer.models.backbone3d import Res16UNet

        def levels() -> None:
            cache = SparseTensor(coords, colours).cache
            for s in (1, 2, 4, 8):
                cache.down_map(s)

        # The minkowski backend computes pointformer's coarse voxel sets too (its outputs are
        # row-aligned with them): this part of its step is not MinkowskiEngine's own work.
        emit({"record": "coarse_voxel_sets", "strides": [2, 4, 8, 16],
              "seconds": timeit(levels, args.repeats)["median_s"]})

        net = Res16UNet(in_channels=3, variant="34C", backend="torch").train()

        def backbone_step(backend: str) -> float:
            set_backend(net, backend)
            net.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            x = SparseTensor(coords, colours)  # fresh pass: kernel maps are built inside the step
            out = net(x)
            out.features.feats.square().mean().backward()
            return time.perf_counter() - t0

        # Backends interleaved step by step, so that load from other processes hits both alike.
        times: dict[str, list[float]] = {b: [] for b in backends}
        for b in backends:
            backbone_step(b)  # warm-up
        for _ in range(args.backbone_repeats):
            for b in backends:
                times[b].append(backbone_step(b))
        for b in backends:
            emit({"record": "res16unet34c_train_step", "backend": b, "voxels": int(coords.shape[0]),
                  "forward_backward_s": statistics.median(times[b]), "min_s": min(times[b]),
                  "repeats": args.backbone_repeats})
        if "minkowski" in times:
            emit({"record": "res16unet34c_speedup_torch_over_minkowski",
                  "median_ratio": statistics.median(times["minkowski"]) / statistics.median(times["torch"]),
                  "per_step_ratios": [m / t for m, t in zip(times["minkowski"], times["torch"])]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
