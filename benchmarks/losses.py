"""Time (forward + backward, matching included) and memory of every shipped loss, side by side.

For each (N queries, K instances, P tokens) of the grid, every loss runs on the same random scene, timed round-robin
(60 % of the token weight on K instances, 35 % background, 5 % ignore; queries seeded on random
tokens, so some instances have no seed and fall back) and reports the median over repeats.
Memory: on CUDA the peak allocated during forward+backward; on CPU the bytes autograd saves for
backward (unique storages, via saved-tensor hooks) — the part of a step's memory a loss adds.

Prints one JSON line per (loss, N, K, P) and a summary line per grid point with time ratios to
hungarian. Example:
    OMP_NUM_THREADS=2 python benchmarks/losses.py                      # full grid
    python benchmarks/losses.py --queries 200 --instances 60 --tokens 4096 --repeats 20
    python benchmarks/losses.py --summarize run.jsonl                  # markdown tables
    python benchmarks/losses.py --criterion 5 13 --queries 150 --instances 30 --tokens 3000  # one step
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable

import torch

from pointformer.losses import SceneInputs, TokenTargets, get_loss, registered_losses, scene_loss

DEFAULT_LOSSES = ("influencer", "influencer_sigmoid", "hungarian", "greedy", "influencer_unseeded",
                  "hungarian_mask3d_style")


def make_scene(n: int, k: int, p: int, c: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(p, generator=g)
    inst = torch.where(u < 0.6, torch.randint(1, k + 1, (p,), generator=g), torch.zeros(p, dtype=torch.long))
    inst = torch.where(u > 0.95, torch.full_like(inst, -1), inst)
    inst[:k] = torch.arange(1, k + 1)  # every instance present
    weight = torch.randint(10, 200, (p,), generator=g).float()
    classes = torch.randint(0, c, (k,), generator=g)
    seeds = torch.randperm(p, generator=g)[:n]
    mask = torch.randn(n, p, generator=g) * 3
    bg = torch.randn(p, generator=g)
    cls = torch.randn(n, c + 1, generator=g)
    return [t.to(device) for t in (mask, bg, cls, inst, weight, classes, seeds)]


def saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves for backward while running fn()."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def mask3d_style_hungarian(mask, bg, cls, inst, weight, classes, seeds):
    """Reference point, not shipped: the Hungarian criterion computed the way Mask3D/Mask2Former
    code does it — dense [K, P] target masks and einsum cost matrices (BCE and dice numerators are
    [N, P] x [P, K] products), scipy on the CPU copy, then BCE/dice on the matched rows against the
    dense targets. Token weights enter as per-token factors, ignore tokens are dropped."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    keep = inst >= 0
    z, w, lab = mask[:, keep], weight[keep], inst[keep]
    k = classes.numel()
    targets = (lab.unsqueeze(0) == torch.arange(1, k + 1, device=z.device).unsqueeze(1)).float()  # [K, P]
    wn = w / w.sum()
    with torch.no_grad():
        pos = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.ones_like(z), reduction="none") * wn
        neg = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.zeros_like(z), reduction="none") * wn
        cost_bce = torch.einsum("np,kp->nk", pos, targets) + torch.einsum("np,kp->nk", neg, 1 - targets)
        prob = z.sigmoid() * w
        numer = 2 * torch.einsum("np,kp->nk", prob, targets)
        denom = prob.sum(-1)[:, None] + (targets * w).sum(-1)[None, :]
        cost_dice = 1 - (numer + 1) / (denom + 1)
        cost_cls = -cls.softmax(-1)[:, classes]
        cost = (2 * cost_cls + 5 * cost_bce + 2 * cost_dice).nan_to_num(1e8, 1e8, -1e8)
    rows, cols = linear_sum_assignment(cost.cpu().numpy().astype(np.float64))
    rows = torch.as_tensor(rows, device=z.device)
    cols = torch.as_tensor(cols, device=z.device)
    zm, tm = z[rows], targets[cols]
    bce = (torch.nn.functional.binary_cross_entropy_with_logits(zm, tm, reduction="none") * wn).sum(1)
    pm = zm.sigmoid() * w
    dice = 1 - (2 * (pm * tm).sum(1) + 1) / (pm.sum(1) + (tm * w).sum(1) + 1)
    target_cls = torch.full((cls.shape[0],), cls.shape[1] - 1, dtype=torch.long, device=z.device)
    target_cls[rows] = classes[cols]
    class_weight = torch.ones(cls.shape[1], device=z.device)
    class_weight[-1] = 0.1
    loss_cls = torch.nn.functional.cross_entropy(cls, target_cls, weight=class_weight)
    return {"loss": 2 * loss_cls + 5 * bce.sum() / k + 2 * dice.sum() / k}


REFERENCE_LOSSES = {"hungarian_mask3d_style": mask3d_style_hungarian}


def make_step(name: str, scene) -> Callable[[], torch.Tensor]:
    """One forward+backward of a loss on one scene: a registered loss through ``scene_loss``, or a
    reference implementation (same seven tensors)."""
    mask0, bg0, cls0, inst, weight, classes, seeds = scene
    reference = REFERENCE_LOSSES.get(name)
    ownership = reference is None and get_loss(name).activation == "ownership"
    targets = TokenTargets(inst, weight, classes)

    def step() -> torch.Tensor:
        mask = mask0.detach().requires_grad_()
        bg = bg0.detach().requires_grad_()
        cls = cls0.detach().requires_grad_()
        if reference is not None:
            loss = reference(mask, bg, cls, inst, weight, classes, seeds)["loss"]
        else:
            inputs = SceneInputs(mask_logits=mask, class_logits=cls, targets=targets,
                                 background_logits=bg if ownership else None, query_seed_token=seeds)
            loss = scene_loss(name, inputs)["loss"]
        loss.backward()
        return loss

    return step


def measure_side_by_side(names: list[str], scene, repeats: int, device: torch.device) -> dict[str, dict]:
    """Round-robin over the losses (each round times every loss once), so that load changes on a
    shared machine hit every loss alike. Reports median and min per loss."""
    return time_steps({name: make_step(name, scene) for name in names}, repeats, device)


def make_criterion_step(name: str, batch: int, layers: int, n: int, k: int, p: int, c: int,
                        device: torch.device) -> Callable[[], torch.Tensor]:
    """One training step's loss: InstanceCriterion over `batch` scenes and `layers` decoder stages."""
    from pointformer.losses import InstanceCriterion, StagePrediction

    scenes = [make_scene(n, k, p, c, device, seed=b) for b in range(batch)]
    targets = [TokenTargets(sc[3], sc[4], sc[5]) for sc in scenes]
    seeds = [sc[6] for sc in scenes]
    criterion = InstanceCriterion(loss=name)
    ownership = get_loss(name).activation == "ownership"
    g = torch.Generator().manual_seed(1)
    base = [[(torch.randn(n, p, generator=g) * 3).to(device), torch.randn(p, generator=g).to(device),
             torch.randn(n, c + 1, generator=g).to(device)] for _ in range(layers * batch)]

    def step() -> torch.Tensor:
        leaves = [[t.detach().requires_grad_() for t in trio] for trio in base]
        stages = []
        for i in range(layers):
            trios = leaves[i * batch:(i + 1) * batch]
            stages.append(StagePrediction(mask_logits=[t[0] for t in trios], class_logits=[t[2] for t in trios],
                                          background_logits=[t[1] for t in trios] if ownership else None))
        loss = criterion(stages, seeds, targets)["loss"]
        loss.backward()
        return loss

    return step


def time_steps(steps: dict[str, Callable[[], torch.Tensor]], repeats: int, device: torch.device) -> dict[str, dict]:
    """Round-robin timing of several steps; median/min wall and process-CPU time, and memory."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    names = list(steps)
    for step in steps.values():
        step()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu_times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name, step in steps.items():
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            sync()
            times[name].append(time.perf_counter() - t0)
            cpu_times[name].append(time.process_time() - c0)
    out = {}
    for name, step in steps.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step()
            mem, mem_kind = torch.cuda.max_memory_allocated() - base, "cuda_peak"
        else:
            mem, mem_kind = saved_bytes(step), "saved_for_backward"
        # cpu_ms (process CPU time) is the robust number on a shared CPU machine: time spent
        # descheduled does not count. On CUDA use time_ms (wall, synchronised).
        out[name] = {"time_ms": 1e3 * statistics.median(times[name]), "time_ms_min": 1e3 * min(times[name]),
                     "cpu_ms": 1e3 * statistics.median(cpu_times[name]), "cpu_ms_min": 1e3 * min(cpu_times[name]),
                     "mem_mb": mem / 2**20, "mem_kind": mem_kind}
    return out


def summarize(path: str) -> str:
    """Markdown tables (median ms per loss per grid point, ratios, memory, fitted scaling
    exponents time ∝ N^a K^b P^c) from this script's JSON lines."""
    import numpy as np

    rows: dict[tuple[int, int, int], dict[str, dict]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("event") == "loss":
                rows.setdefault((rec["N"], rec["K"], rec["P"]), {})[rec["loss"]] = rec
    names = [n for n in DEFAULT_LOSSES if any(n in r for r in rows.values())]
    key = "cpu_ms" if all("cpu_ms" in rec for r in rows.values() for rec in r.values()) else "time_ms"
    out = [f"Median {key} per forward+backward.", "",
           "| N | K | P | " + " | ".join(names) + " | influencer / hungarian | influencer / mask3d-style |",
           "|" + "---|" * (len(names) + 5)]
    for (n, k, p), r in sorted(rows.items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        cells = [f"{r[x][key]:.1f}" if x in r else "–" for x in names]
        ratio = lambda a, b: f"{r[a][key] / r[b][key]:.2f}" if a in r and b in r else "–"  # noqa: E731
        out.append(f"| {n} | {k} | {p} | " + " | ".join(cells) +
                   f" | {ratio('influencer', 'hungarian')} | {ratio('influencer', 'hungarian_mask3d_style')} |")
    out += ["", "| loss | exponent N | exponent K | exponent P | saved-for-backward MB at the largest point |",
            "|---|---|---|---|---|"]
    largest = max(rows, key=lambda key: key[0] * key[2] * key[1])
    for x in names:
        pts = [(point, r[x][key]) for point, r in rows.items() if x in r]
        a = np.array([[1.0, np.log(point[0]), np.log(point[1]), np.log(point[2])] for point, _ in pts])
        y = np.log([t for _, t in pts])
        coef = np.linalg.lstsq(a, y, rcond=None)[0]
        mem = rows[largest].get(x, {}).get("mem_mb", float("nan"))
        out.append(f"| {x} | {coef[1]:.2f} | {coef[2]:.2f} | {coef[3]:.2f} | {mem:.1f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--instances", type=int, nargs="+", default=[5, 20, 60])
    ap.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--losses", nargs="+", default=list(DEFAULT_LOSSES),
                    choices=sorted(registered_losses()) + sorted(REFERENCE_LOSSES))
    ap.add_argument("--classes", type=int, default=18)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--criterion", type=int, nargs=2, metavar=("BATCH", "LAYERS"),
                    help="time InstanceCriterion over BATCH scenes x LAYERS decoder stages at the first N, K, P")
    ap.add_argument("--summarize", metavar="JSONL", help="print markdown tables from a previous run's output and exit")
    args = ap.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.criterion:
        batch, layers = args.criterion
        device = torch.device(args.device)
        n, k, p = args.queries[0], args.instances[0], args.tokens[0]
        names = [x for x in args.losses if x not in REFERENCE_LOSSES]  # the criterion runs registered losses
        steps = {x: make_criterion_step(x, batch, layers, n, k, p, args.classes, device) for x in names}
        for x, r in time_steps(steps, args.repeats, device).items():
            print(json.dumps({"event": "criterion", "loss": x, "batch": batch, "layers": layers, "N": n, "K": k,
                              "P": p, "device": str(device), "threads": torch.get_num_threads(), **r}), flush=True)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(json.dumps({"event": "config", "device": str(device), "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "repeats": args.repeats}), flush=True)
    for p in args.tokens:
        for k in args.instances:
            for n in args.queries:
                scene = make_scene(n, k, p, args.classes, device)
                row = measure_side_by_side(list(args.losses), scene, args.repeats, device)
                for name, r in row.items():
                    print(json.dumps({"event": "loss", "loss": name, "N": n, "K": k, "P": p, **r}), flush=True)
                if "hungarian" in row:
                    key = "cpu_ms" if device.type == "cpu" else "time_ms"
                    hung = row["hungarian"]
                    ratios = {name: {"median": round(r[key] / hung[key], 3),
                                     "min": round(r[key + "_min"] / hung[key + "_min"], 3)} for name, r in row.items()}
                    print(json.dumps({"event": "ratio_to_hungarian", "N": n, "K": k, "P": p, **ratios}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
