"""Report of a convergence study (``benchmarks/convergence.py``): curves, table and plots.

Reads ``OUT/runs/<variant>/seed<k>/evaluations.json`` of every run (finished or not) and writes into OUT:

    curves.csv             one row per (variant, seed, evaluation): step, train seconds, mAP/mAP50/mAP25,
                           duplicate rate, unmatched-GT rate, assignment stability
    table.csv, table.md    per variant: final metrics (seed mean and min..max), steps and seconds to reach
                           90 % of the best final mAP50, time per step split into its parts, diagnostics
    summary.json           the same numbers, machine-readable
    map50_vs_step.png      mAP50 against training step: seed mean, min..max band
    map50_vs_time.png      mAP50 against training wall-clock (seed-mean seconds at each evaluation)
    diagnostics.png        duplicate rate, unmatched-GT rate and assignment stability against step

    .venv/bin/python benchmarks/convergence_report.py benchmarks/results/convergence
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from pointformer.io.atomic import atomic_write_bytes, atomic_write_text

REACH_FRACTION = 0.9
# one colour and one row position per variant in every study (unknown variants follow)
CANONICAL_ORDER = ("influencer", "influencer_sigmoid", "hungarian", "hungarian_seeded", "greedy", "influencer_unseeded",
                   "influencer_objectness")
# seeded forms besides the goal's own (influencer) that the goal criterion is also reported for
OTHER_SEEDED = ("influencer_objectness", "influencer_sigmoid")
CURVE_KEYS = ("map", "map50", "map25", "duplicate_rate", "unmatched_gt_rate", "assignment_stability", "train_seconds",
              "seed_coverage")   # seed_coverage: seeded queries only (benchmarks/seeding.py, docs/convergence.md)
# the goal: the seeded ownership form reaches Hungarian's final mAP50 in at most this share of its
# steps and ends at least GOAL_MARGIN above it (seed means)
GOAL_STEP_FRACTION = 0.5
GOAL_MARGIN = 0.03
TIMING_KEYS = ("t_step", "t_data", "t_model", "t_loss", "t_assign", "t_backward")


@dataclass
class RunCurves:
    """The evaluations of one (variant, seed) run."""

    variant: str
    label: str
    seed: int
    finished: bool
    records: list[dict[str, Any]]

    @property
    def steps(self) -> list[int]:
        return [int(r["step"]) for r in self.records]


@dataclass
class VariantSummary:
    """Seed statistics of one variant on the evaluation steps every seed has reached."""

    variant: str
    label: str
    seeds: list[int]
    finished: int
    steps: list[int]
    curves: dict[str, np.ndarray] = field(default_factory=dict)   # key -> float [S, E] (NaN: missing)
    timing: dict[str, Optional[float]] = field(default_factory=dict)

    def stat(self, key: str, column: int = -1) -> dict[str, Optional[float]]:
        values = self.curves[key][:, column]
        values = values[np.isfinite(values)]
        if values.size == 0:
            return {"mean": None, "min": None, "max": None}
        return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}

    def mean_curve(self, key: str) -> np.ndarray:
        data = self.curves[key]
        with np.errstate(invalid="ignore"):
            counts = np.isfinite(data).sum(0)
            sums = np.where(np.isfinite(data), data, 0.0).sum(0)
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def load_runs(out: Path) -> list[RunCurves]:
    """Every run under ``out/runs`` with at least one evaluation, in the study's order."""
    runs_dir = out / "runs"
    if not runs_dir.is_dir():
        raise ValueError(f"{out}: no runs/ folder (run benchmarks/convergence.py --out {out} first)")
    order = list(CANONICAL_ORDER)
    runs = []
    for path in sorted(runs_dir.glob("*/seed*/evaluations.json")):
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        records = sorted(payload.get("evaluations", []), key=lambda r: r["step"])
        if not records:
            continue
        runs.append(RunCurves(variant=str(payload["variant"]), label=str(payload.get("label", payload["variant"])),
                              seed=int(payload["seed"]), finished=(path.parent / "done.json").is_file(),
                              records=records))
    if not runs:
        raise ValueError(f"{runs_dir}: no run has an evaluation yet")
    rank = {name: i for i, name in enumerate(order)}
    runs.sort(key=lambda r: (rank.get(r.variant.split("@")[0], len(rank)), r.variant, r.seed))
    return runs


def summarise(runs: Sequence[RunCurves]) -> list[VariantSummary]:
    """Group runs by variant; curves on the evaluation steps that every seed of it has reached."""
    by_variant: dict[str, list[RunCurves]] = {}
    for run in runs:
        by_variant.setdefault(run.variant, []).append(run)
    summaries = []
    for variant, group in by_variant.items():
        steps = sorted(set.intersection(*(set(r.steps) for r in group)))
        curves = {}
        for key in CURVE_KEYS:
            rows = []
            for run in group:
                at = {int(r["step"]): r for r in run.records}
                rows.append([_float(at[s].get(key)) for s in steps])
            curves[key] = np.array(rows, dtype=np.float64).reshape(len(group), len(steps))
        timing = {}
        for key in TIMING_KEYS:
            values = [_float(r.records[-1].get(key)) for r in group]
            values = [v for v in values if math.isfinite(v)]
            timing[key] = float(np.mean(values)) if values else None
        summaries.append(VariantSummary(variant=variant, label=group[0].label, seeds=[r.seed for r in group],
                                        finished=sum(r.finished for r in group), steps=steps, curves=curves,
                                        timing=timing))
    return summaries


def _family(variant: str) -> str:
    return variant.split("@")[0]


def goal_check(summaries: Sequence[VariantSummary], seeded: str = "influencer",
               baseline: str = "hungarian") -> Optional[dict[str, Any]]:
    """The issue's goal, measured: does ``seeded`` reach ``baseline``'s final mAP50 (seed mean) in at most
    GOAL_STEP_FRACTION of its steps and end >= GOAL_MARGIN above it? In an lr sweep each loss is
    represented by its row with the most seeds (then the best final mAP50). None without both losses."""
    def pick(family: str) -> Optional[VariantSummary]:
        rows = [s for s in summaries if _family(s.variant) == family and s.steps]
        def rank(s: VariantSummary) -> tuple[int, float]:
            final = s.stat("map50")["mean"]
            return len(s.seeds), -1.0 if final is None else final
        return max(rows, key=rank, default=None)

    ours, base = pick(seeded), pick(baseline)
    if ours is None or base is None:
        return None
    target = base.stat("map50")["mean"]
    final = ours.stat("map50")["mean"]
    reach = first_reach(ours.steps, ours.mean_curve("map50"), target) if target is not None else None
    reach_step = ours.steps[reach] if reach is not None else None
    margin = None if final is None or target is None else final - target
    met = (reach_step is not None and reach_step <= GOAL_STEP_FRACTION * base.steps[-1]
           and margin is not None and margin >= GOAL_MARGIN)
    return {"seeded": ours.variant, "baseline": base.variant, "seeds": [len(ours.seeds), len(base.seeds)],
            "baseline_final_step": base.steps[-1], "baseline_final_map50": base.stat("map50"),
            "seeded_final_map50": ours.stat("map50"), "seeded_step_reaching_baseline_final": reach_step,
            "final_margin": margin, "step_fraction_required": GOAL_STEP_FRACTION, "margin_required": GOAL_MARGIN,
            "met": bool(met)}


def goal_markdown(goal: Optional[dict[str, Any]]) -> str:
    if goal is None:
        return ""
    b, o = goal["baseline_final_map50"], goal["seeded_final_map50"]
    reach = goal["seeded_step_reaching_baseline_final"]
    return (f"\nGoal ({goal['seeded']} vs {goal['baseline']}, seeds {goal['seeds'][0]} / {goal['seeds'][1]}): "
            f"baseline final mAP50 {_spread(b)} at step {goal['baseline_final_step']}; seeded final {_spread(o)}; "
            f"seeded reaches the baseline's final at step {reach if reach is not None else 'never'} (required <= "
            f"{goal['step_fraction_required'] * goal['baseline_final_step']:g}); margin "
            f"{_fmt(goal['final_margin'])} (required >= {goal['margin_required']}): "
            f"**{'met' if goal['met'] else 'not met'}**.\n")


def choose_lrs(out: Path | str) -> dict[str, float]:
    """The learning rate each loss variant does best with in an lr sweep (runs ``<variant>@lr<lr>``):
    highest final mAP50 on the lowest seed every lr of that variant finished; ties go to the higher
    mean mAP50 over the evaluations (the faster riser), then the lower lr."""
    best: dict[str, tuple[tuple[float, float, float], float]] = {}
    finished: dict[str, dict[float, dict[int, list[dict[str, Any]]]]] = {}
    for path in sorted(Path(out).glob("runs/*@lr*/seed*/done.json")):
        evaluations = path.parent / "evaluations.json"
        if not evaluations.is_file():
            continue
        payload = json.loads(evaluations.read_text())
        variant = str(payload.get("loss_variant") or payload["variant"].split("@")[0])
        lr = float(payload["lr"])
        finished.setdefault(variant, {}).setdefault(lr, {})[int(payload["seed"])] = payload["evaluations"]
    for variant, by_lr in finished.items():
        common = set.intersection(*(set(seeds) for seeds in by_lr.values()))
        if not common:
            continue
        seed = min(common)
        for lr, seeds in by_lr.items():
            records = seeds[seed]
            final = _float(records[-1].get("map50")) if records else math.nan
            mean = float(np.nanmean([_float(r.get("map50")) for r in records])) if records else math.nan
            key = (np.nan_to_num(final, nan=-1.0), np.nan_to_num(mean, nan=-1.0), -lr)
            if variant not in best or key > best[variant][0]:
                best[variant] = (key, lr)
    return {variant: lr for variant, (_, lr) in best.items()}


def first_reach(steps: Sequence[int], values: np.ndarray, threshold: float) -> Optional[int]:
    """Index of the first evaluation whose value reaches ``threshold`` (None: never)."""
    for i, v in enumerate(values):
        if math.isfinite(v) and v >= threshold:
            return i
    return None


def build_table(summaries: Sequence[VariantSummary]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of the final table and the shared reference (best final mAP50, the 90 % threshold)."""
    # the reference is taken among the variants that reached the study's last evaluation step
    last = max((s.steps[-1] for s in summaries if s.steps), default=None)
    finals = {s.variant: s.stat("map50")["mean"] for s in summaries if s.steps and s.steps[-1] == last}
    best_variant = max((v for v in finals if finals[v] is not None), key=lambda v: finals[v], default=None)
    best = finals[best_variant] if best_variant is not None else None
    threshold = REACH_FRACTION * best if best else None
    rows = []
    for s in summaries:
        if not s.steps:
            rows.append({"variant": s.variant, "label": s.label, "seeds": len(s.seeds), "finished": s.finished})
            continue
        mean_map50 = s.mean_curve("map50")
        mean_time = s.mean_curve("train_seconds")
        reach = first_reach(s.steps, mean_map50, threshold) if threshold else None
        per_seed = [first_reach(s.steps, s.curves["map50"][i], threshold) if threshold else None
                    for i in range(len(s.seeds))]
        reached = [s.steps[i] for i in per_seed if i is not None]
        stability = s.curves["assignment_stability"]
        stab_values = stability[np.isfinite(stability)]
        row = {
            "variant": s.variant, "label": s.label, "seeds": len(s.seeds), "finished": s.finished,
            "final_step": s.steps[-1],
            **{f"final_{k}": s.stat(k) for k in ("map", "map50", "map25", "duplicate_rate", "unmatched_gt_rate",
                                                 "seed_coverage")},
            "best_map50_over_steps": float(np.nanmax(mean_map50)) if np.isfinite(mean_map50).any() else None,
            "steps_to_90pct_best": s.steps[reach] if reach is not None else None,
            "seconds_to_90pct_best": float(mean_time[reach]) if reach is not None else None,
            "seeds_reaching_90pct": len(reached),
            "steps_to_90pct_per_seed": [s.steps[i] if i is not None else None for i in per_seed],
            "assignment_stability_mean": float(stab_values.mean()) if stab_values.size else None,
            "final_assignment_stability": s.stat("assignment_stability"),
            "train_seconds_final": s.stat("train_seconds"),
            **{f"ms_{k[2:]}": (v * 1000.0 if v is not None else None) for k, v in s.timing.items()},
        }
        rows.append(row)
    reference = {"best_variant": best_variant, "best_final_map50": best, "threshold_map50": threshold,
                 "fraction": REACH_FRACTION}
    return rows, reference


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def _spread(stat: dict[str, Optional[float]], digits: int = 3) -> str:
    if stat.get("mean") is None:
        return "–"
    return f"{_fmt(stat['mean'], digits)} [{_fmt(stat['min'], digits)}, {_fmt(stat['max'], digits)}]"


def table_markdown(rows: Sequence[dict[str, Any]], reference: dict[str, Any]) -> str:
    """The table as Markdown (what BENCHMARKS.md quotes)."""
    head = ("| variant | seeds | step | mAP50 mean [min, max] | mAP | mAP25 | steps (s) to 90 % of best | "
            "ms/step: total = data + model + loss (assign) + backward | duplicates | unmatched GT | "
            "stability: mean (last) | seed coverage |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        if "final_step" not in r:
            lines.append(f"| {r['label']} | {r['seeds']} | – | no evaluation yet | | | | | | | | |")
            continue
        reach = "not reached" if r["steps_to_90pct_best"] is None else (
            f"{r['steps_to_90pct_best']} ({_fmt(r['seconds_to_90pct_best'], 0)} s; "
            f"{r['seeds_reaching_90pct']}/{r['seeds']} seeds)")
        ms = (f"{_fmt(r['ms_step'], 0)} = {_fmt(r['ms_data'], 0)} + {_fmt(r['ms_model'], 0)} + {_fmt(r['ms_loss'], 1)} "
              f"({_fmt(r['ms_assign'], 1)}) + {_fmt(r['ms_backward'], 0)}")
        lines.append(
            f"| {r['label']} | {r['seeds']} | {r['final_step']} | {_spread(r['final_map50'])} | "
            f"{_fmt(r['final_map']['mean'])} | "
            f"{_fmt(r['final_map25']['mean'])} | {reach} | {ms} | {_fmt(r['final_duplicate_rate']['mean'], 2)} | "
            f"{_fmt(r['final_unmatched_gt_rate']['mean'], 2)} | {_fmt(r['assignment_stability_mean'], 2)} "
            f"({_fmt(r['final_assignment_stability']['mean'], 2)}) | {_fmt(r['final_seed_coverage']['mean'], 2)} |")
    best = reference.get("best_final_map50")
    lines.append("")
    lines.append(f"Best final mAP50 (seed mean): {_fmt(best)} ({reference.get('best_variant')}); "
                 f"90 % of it = {_fmt(reference.get('threshold_map50'))}. Steps/seconds to reach it are read off the "
                 "seed-mean curve; seconds = training wall-clock (evaluations excluded). Seed coverage: share of the "
                 "held-out GT instances holding a query seed at the last evaluation (seeded queries only).")
    return "\n".join(lines) + "\n"


def curve_table_markdown(summaries: Sequence[VariantSummary], key: str = "map50") -> str:
    """Seed-mean ``key`` at every evaluation step, min..max over seeds in brackets (the curves as a table)."""
    steps = sorted(set().union(*(s.steps for s in summaries)))
    head = f"| {key} by step | " + " | ".join(str(st) for st in steps) + " |"
    lines = [head, "|" + "|".join(["---"] * (len(steps) + 1)) + "|"]
    for s in summaries:
        cells = []
        for st in steps:
            if st not in s.steps:
                cells.append("")
                continue
            column = s.steps.index(st)
            stat = s.stat(key, column)
            cells.append(_fmt(stat["mean"]) if len(s.seeds) == 1 else
                         f"{_fmt(stat['mean'])} [{_fmt(stat['min'], 2)}, {_fmt(stat['max'], 2)}]")
        lines.append(f"| {s.label} ({len(s.seeds)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_csv(rows: Sequence[dict[str, Any]]) -> str:
    columns = ["variant", "label", "seeds", "finished", "final_step"]
    for k in ("map", "map50", "map25", "duplicate_rate", "unmatched_gt_rate"):
        columns += [f"final_{k}_mean", f"final_{k}_min", f"final_{k}_max"]
    columns += ["steps_to_90pct_best", "seconds_to_90pct_best", "seeds_reaching_90pct", "assignment_stability_mean",
                "final_assignment_stability_mean",
                "ms_step", "ms_data", "ms_model", "ms_loss", "ms_assign", "ms_backward"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        flat = dict(r)
        flat["final_assignment_stability_mean"] = (r.get("final_assignment_stability") or {}).get("mean")
        for k in ("map", "map50", "map25", "duplicate_rate", "unmatched_gt_rate"):
            for part in ("mean", "min", "max"):
                flat[f"final_{k}_{part}"] = (r.get(f"final_{k}") or {}).get(part)
        writer.writerow(flat)
    return buf.getvalue()


def curves_csv(runs: Sequence[RunCurves]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["variant", "seed", "step", *CURVE_KEYS, "assignment_retention"])
    for run in runs:
        for r in run.records:
            writer.writerow([run.variant, run.seed, r["step"], *[r.get(k) for k in CURVE_KEYS],
                             r.get("assignment_retention")])
    return buf.getvalue()


def _color(variant: str, index: int, colors: Sequence[str]) -> str:
    position = CANONICAL_ORDER.index(variant) if variant in CANONICAL_ORDER else len(CANONICAL_ORDER) + index
    return colors[position % len(colors)]


def _plot(summaries: Sequence[VariantSummary], out: Path, reference: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for x_key, name, xlabel in (("step", "map50_vs_step.png", "training step"),
                                ("time", "map50_vs_time.png", "training wall-clock (s, evaluations excluded)")):
        fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=100)
        for i, s in enumerate(summaries):
            if not s.steps:
                continue
            color = _color(s.variant, i, colors)
            x = np.array(s.steps, dtype=float) if x_key == "step" else s.mean_curve("train_seconds")
            data = s.curves["map50"]
            ax.plot(x, s.mean_curve("map50"), marker="o", ms=3, color=color, label=f"{s.label} ({len(s.seeds)} seeds)")
            if len(s.seeds) > 1:
                ax.fill_between(x, np.nanmin(data, 0), np.nanmax(data, 0), color=color, alpha=0.18, lw=0)
        if reference.get("threshold_map50"):
            ax.axhline(reference["threshold_map50"], color="grey", ls=":", lw=1, label="90 % of best final mAP50")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mAP50 (held-out scenes)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        ax.set_title("mAP50: seed mean, band = min..max over seeds", fontsize=9)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        atomic_write_bytes(out / name, buf.getvalue())
        written.append(out / name)

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=100)
    for ax, key, title in zip(axes, ("duplicate_rate", "unmatched_gt_rate", "assignment_stability"),
                              ("duplicate rate", "unmatched-GT rate", "assignment stability")):
        for i, s in enumerate(summaries):
            if s.steps:
                ax.plot(s.steps, s.mean_curve(key), marker="o", ms=3, color=_color(s.variant, i, colors), label=s.label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(out / "diagnostics.png", buf.getvalue())
    written.append(out / "diagnostics.png")
    return written


def write_report(out: Path | str) -> dict[str, Any]:
    """Write curves.csv, table.csv/.md, summary.json and the PNG plots into ``out``; returns the summary."""
    out = Path(out)
    runs = load_runs(out)
    summaries = summarise(runs)
    rows, reference = build_table(summaries)
    atomic_write_text(out / "curves.csv", curves_csv(runs))
    atomic_write_text(out / "table.csv", table_csv(rows))
    goal = goal_check(summaries)
    # the same criterion for the other seeded forms in the study (e.g. objectness seeding), when present
    other_goals = [g for g in (goal_check(summaries, seeded=family) for family in OTHER_SEEDED) if g is not None]
    atomic_write_text(out / "table.md", table_markdown(rows, reference) + goal_markdown(goal)
                      + "".join(goal_markdown(g) for g in other_goals) + "\n" + curve_table_markdown(summaries))
    plots = _plot(summaries, out, reference)
    study = json.loads((out / "study.json").read_text()) if (out / "study.json").is_file() else {}
    data_stats = {}
    if study.get("data_root"):
        stamp = Path(study["data_root"]).parent / "READY.json"
        if stamp.is_file():
            data_stats = json.loads(stamp.read_text())
    settings = {k: study.get(k) for k in ("size", "device", "jobs", "threads", "torch", "cpu_count")}
    evaluations = [{"variant": r.variant, "seed": r.seed, "finished": r.finished,
                    "evaluations": [{k: e.get(k) for k in ("step", "map", "map50", "map25", "seed_coverage",
                                                           "unmatched_gt_rate", "duplicate_rate") if k in e}
                                    for e in r.records]} for r in runs]
    summary = {"reference": reference, "goal": goal, "goal_other_seeded": other_goals, "variants": rows,
               "study": settings,
               "data": data_stats, "runs": evaluations,
               "files": [str(p.name) for p in plots] + ["curves.csv", "table.csv", "table.md"]}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, allow_nan=True))
    return {"table": str(out / "table.md"), "plots": [str(p) for p in plots], "reference": reference}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the tables and plots of a convergence study.")
    parser.add_argument("out", type=Path, nargs="?",
                        default=Path(__file__).resolve().parent / "results" / "convergence",
                        help="the study's --out folder")
    args = parser.parse_args(argv)
    try:
        result = write_report(args.out)
    except ValueError as exc:
        print(f"convergence_report: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"event": "report", **result}))
    print((args.out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
