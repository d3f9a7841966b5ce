"""``pointformer show``: ground truth and prediction of one scene side by side, in matching colours.

Every GT instance gets one colour; a prediction matched to it (:mod:`pointformer.vis.matching`: best
point IoU, >= 0.5) is drawn in the same colour, so the same object has the same colour in both panels.
Unmatched predictions (false positives) get colours of their own, hatched with dark stripes and
labelled "FP"; GT instances no prediction matches (missed) are hatched and labelled "missed" on the
GT panel; a matched prediction of another class keeps the object's colour and is labelled with the
predicted class. A legend lists every colour with its class, and the panel titles carry the counts.
Points of no instance keep the scan's colour, faded towards grey. Without GT, one prediction panel.
The same colours go into coloured PLYs (prediction, and GT when given) that any 3D viewer opens.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from pointformer.io.atomic import atomic_write
from pointformer.io.ply import write_ply
from pointformer.vis.camera import project, room_camera, visible_mask
from pointformer.vis.colors import background_colors, palette
from pointformer.vis.matching import InstanceMatch, match_instances
from pointformer.vis.render import View, prepare_view, render_images

HATCH_RGB = np.array([25, 25, 25], dtype=np.uint8)
MAX_LEGEND_ENTRIES = 40


@dataclass
class ShowScene:
    """What ``show`` draws (N points, P predicted and G GT instances).

    xyz float [N, 3] (z up, metres); rgb uint8 [N, 3] scan colours or None; faces int [F, 3] or None;
    pred_ids int [N] prediction index, -1 = none; pred_classes int [P]; pred_scores float [P];
    gt_ids int [N] GT index, -1 = none, or None (no GT); gt_classes int [G]; class_names: class id -> name.
    """

    xyz: np.ndarray
    pred_ids: np.ndarray
    pred_classes: np.ndarray
    pred_scores: np.ndarray
    class_names: Mapping[int, str]
    rgb: Optional[np.ndarray] = None
    faces: Optional[np.ndarray] = None
    gt_ids: Optional[np.ndarray] = None
    gt_classes: Optional[np.ndarray] = None
    name: str = ""
    double: bool = False  # write float64 coordinates into the PLYs (georeferenced scans)

    def local_xyz(self) -> np.ndarray:
        """float32 [N, 3] coordinates relative to the scan's minimum corner: float32 keeps millimetres there,
        while georeferenced coordinates (e.g. UTM, ~10^6 m) would round to decimetres."""
        xyz = np.asarray(self.xyz, dtype=np.float64)
        return (xyz - xyz.min(axis=0)).astype(np.float32)

    def check(self) -> "ShowScene":
        """Raise ValueError naming the scene and the inconsistent array."""
        n = len(self.xyz)
        where = self.name or "show"
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3 or n == 0:
            raise ValueError(f"{where}: need points xyz [N, 3] with N > 0, got {self.xyz.shape}")
        if self.pred_ids.shape != (n,):
            raise ValueError(f"{where}: the predictions have {self.pred_ids.shape[0]} points, the scene has {n}")
        num_pred = len(self.pred_classes)
        if self.pred_scores.shape != (num_pred,) or self.pred_ids.max(initial=-1) >= num_pred:
            raise ValueError(f"{where}: prediction ids reach {int(self.pred_ids.max(initial=-1))} but "
                             f"{num_pred} classes and {len(self.pred_scores)} scores are given")
        if self.rgb is not None and self.rgb.shape != (n, 3):
            raise ValueError(f"{where}: colours have shape {self.rgb.shape}, expected ({n}, 3)")
        if self.gt_ids is not None:
            if self.gt_ids.shape != (n,):
                raise ValueError(f"{where}: the ground truth has {self.gt_ids.shape[0]} points, the scene has {n}")
            if self.gt_classes is None or self.gt_ids.max(initial=-1) >= len(self.gt_classes):
                raise ValueError(f"{where}: GT ids need one class per GT instance")
        return self

    def class_name(self, class_id: int) -> str:
        return self.class_names.get(int(class_id), f"class {int(class_id)}")


@dataclass(frozen=True)
class LegendEntry:
    """One legend line: a colour swatch (hatched or not) and its text."""

    rgb: tuple[int, int, int]
    text: str
    hatched: bool = False
    problem: bool = False  # missed, FP or wrong class: kept first when the legend must be shortened


@dataclass
class ShowColours:
    """Colours of both panels: pred_rgb / gt_rgb uint8 [N, 3] (gt_rgb None without GT), the colour of each
    GT instance uint8 [G, 3] and prediction uint8 [P, 3], the matching, the legend and the panel titles."""

    pred_rgb: np.ndarray
    gt_rgb: Optional[np.ndarray]
    gt_colors: np.ndarray
    pred_colors: np.ndarray
    match: Optional[InstanceMatch]
    legend: list[LegendEntry]
    titles: list[str]
    markers: list[tuple[str, int, str]] = field(default_factory=list)  # (panel, instance, text)


def stripe_mask(xyz: np.ndarray, ids: np.ndarray, hatched: np.ndarray) -> np.ndarray:
    """bool [N]: the dark bands of hatched instances — about 6 bands across each instance (along x+y+z).

    xyz float [N, 3]; ids int [N] (-1 = none); hatched bool [K] per instance. O(N log N) for any K.
    """
    ids = np.asarray(ids)
    marked = np.zeros(len(ids), dtype=bool)
    candidates = np.flatnonzero(ids >= 0)
    candidates = candidates[hatched[ids[candidates]]]
    if candidates.size == 0:
        return marked
    coordinate = xyz[candidates].sum(axis=1)
    owner = ids[candidates]
    num = len(hatched)
    low = np.full(num, np.inf)
    high = np.full(num, -np.inf)
    np.minimum.at(low, owner, coordinate)
    np.maximum.at(high, owner, coordinate)
    width = np.maximum((high - low) / 12.0, 1e-3)
    marked[candidates] = (np.floor((coordinate - low[owner]) / width[owner]) % 2).astype(bool)
    return marked


def _paint(rgb: np.ndarray, xyz: np.ndarray, ids: np.ndarray, colors: np.ndarray, hatched: np.ndarray) -> None:
    members = ids >= 0
    rgb[members] = colors[ids[members]]
    rgb[stripe_mask(xyz, ids, hatched)] = HATCH_RGB


def colour_scene(scene: ShowScene) -> ShowColours:
    """Match, colour and describe ``scene`` (see the module docstring); no rendering."""
    scene.check()
    n, num_pred = len(scene.xyz), len(scene.pred_classes)
    base = background_colors(n, base_rgb=scene.rgb)
    pred_rgb = base.copy()
    xyz = np.asarray(scene.xyz, dtype=np.float64)
    if scene.gt_ids is None:
        pred_colors = palette(num_pred)
        _paint(pred_rgb, xyz, scene.pred_ids, pred_colors, np.zeros(num_pred, dtype=bool))
        legend = [LegendEntry(tuple(int(c) for c in pred_colors[p]),
                              f"{scene.class_name(scene.pred_classes[p])} ({scene.pred_scores[p]:.2f})")
                  for p in range(num_pred)]
        return ShowColours(pred_rgb=pred_rgb, gt_rgb=None, gt_colors=np.zeros((0, 3), np.uint8),
                           pred_colors=pred_colors, match=None, legend=legend,
                           titles=[f"prediction: {num_pred} instances (no ground truth given)"])
    gt_classes = np.asarray(scene.gt_classes)
    num_gt = len(gt_classes)
    match = match_instances(scene.pred_ids, scene.gt_ids, pred_classes=np.asarray(scene.pred_classes),
                            gt_classes=gt_classes, pred_scores=np.asarray(scene.pred_scores),
                            num_pred=num_pred, num_gt=num_gt)
    false_pos = np.flatnonzero(match.pred_to_gt < 0)
    colours = palette(num_gt + len(false_pos))
    gt_colors = colours[:num_gt]
    pred_colors = np.empty((num_pred, 3), dtype=np.uint8)
    matched = match.pred_to_gt >= 0
    pred_colors[matched] = gt_colors[match.pred_to_gt[matched]]
    pred_colors[false_pos] = colours[num_gt:]
    gt_rgb = base.copy()
    _paint(gt_rgb, xyz, np.asarray(scene.gt_ids), gt_colors, match.gt_to_pred < 0)
    _paint(pred_rgb, xyz, scene.pred_ids, pred_colors, ~matched)

    legend, markers = [], []
    for g in range(num_gt):
        name, p = scene.class_name(gt_classes[g]), int(match.gt_to_pred[g])
        rgb = tuple(int(c) for c in gt_colors[g])
        if p < 0:
            legend.append(LegendEntry(rgb, f"{name}: missed", hatched=True, problem=True))
            markers.append(("gt", g, "missed"))
        elif not match.same_class[p]:
            predicted = scene.class_name(scene.pred_classes[p])
            legend.append(LegendEntry(rgb, f"{name}: predicted as {predicted}", problem=True))
            markers.append(("pred", p, f"as {predicted}"))
        else:
            legend.append(LegendEntry(rgb, f"{name} (IoU {match.pred_iou[p]:.2f})"))
    for p in false_pos:
        legend.append(LegendEntry(tuple(int(c) for c in pred_colors[p]),
                                  f"FP: {scene.class_name(scene.pred_classes[p])} ({scene.pred_scores[p]:.2f})",
                                  hatched=True, problem=True))
        markers.append(("pred", int(p), "FP"))
    titles = [f"ground truth: {num_gt} objects, {match.missed} missed (FN)",
              f"prediction: {num_pred} instances, TP {match.true_positives}, FP {match.false_positives}"
              + (f", wrong class {match.wrong_class}" if match.wrong_class else "")]
    return ShowColours(pred_rgb=pred_rgb, gt_rgb=gt_rgb, gt_colors=gt_colors, pred_colors=pred_colors, match=match,
                       legend=legend, titles=titles, markers=markers)


@dataclass(frozen=True)
class ShowLayout:
    """Where things are in the PNG, in pixels: size (width, height); boxes (left, top, right, bottom)."""

    size: tuple[int, int]
    panels: list[tuple[int, int, int, int]]
    legend: tuple[int, int, int, int]


@dataclass(frozen=True)
class ShowResult:
    """What :func:`render_show` wrote and how: the PNG and its layout, the PLYs, the backend, the colouring."""

    png: Path
    layout: ShowLayout
    plys: list[Path]
    backend: str
    colours: ShowColours


def shorten_legend(legend: list[LegendEntry], limit: int) -> list[LegendEntry]:
    """At most ``limit`` entries, in their order; when some must go, the problems (missed, FP, wrong class)
    stay before the correct ones, which are what a reader of a crowded scene needs least."""
    if len(legend) <= limit:
        return list(legend)
    ranked = sorted(range(len(legend)), key=lambda i: (not legend[i].problem, i))[:limit]
    return [legend[i] for i in sorted(ranked)]


def _point_size(view: View, camera, width: int, height: int) -> float:
    """Splat size (pixels) that closes the gaps between points: about the spacing of the projected points."""
    uv, depth = project(camera, view.xyz, width, height)
    inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    if inside.sum() < 2:
        return 3.0
    span = uv[inside].max(0) - uv[inside].min(0)
    spacing = math.sqrt(max(float(span[0] * span[1]), 1.0) / inside.sum())
    return float(np.clip(round(spacing * 1.6), 2, 8))


def _compose(path: Path, images: list[np.ndarray], colours: ShowColours, marker_uv: list[tuple[int, float, float, str]],
             title: str) -> "ShowLayout":
    """Panels side by side at 1:1 pixel scale, titles above, the legend below; written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    height, width = images[0].shape[:2]
    entries = shorten_legend(colours.legend, MAX_LEGEND_ENTRIES)
    fig_w = width * len(images)
    # a legend column as wide as its longest text (8 pt is ~6 px a character) plus the swatch
    column_px = 6 * max([len(e.text) for e in entries] + [10]) + 44
    columns = max(1, min(fig_w // column_px, len(entries) + 1))
    rows = max(math.ceil((len(entries) + 1) / columns), 1)
    note = "hatched: false positive (prediction) / missed (ground truth); match: point IoU >= 0.5"
    title_px, legend_px, dpi = 56, 30 + rows * 19, 100
    fig_h = title_px + height + legend_px
    fig = plt.figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi, facecolor="white")
    if title:
        fig.text(0.5, 1 - 6 / fig_h, title, ha="center", va="top", fontsize=10, color="#444444")
    if colours.match is not None:
        fig.text(0.5, 4 / fig_h, note, ha="center", va="bottom", color="#444444",
                 fontsize=min(8.0, 1.2 * fig_w / len(note) / 0.83))
    for i, (image, panel_title) in enumerate(zip(images, colours.titles)):
        ax = fig.add_axes((i * width / fig_w, legend_px / fig_h, width / fig_w, height / fig_h))
        ax.imshow(image, interpolation="nearest")
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.set_axis_off()
        fig.text((i + 0.5) * width / fig_w, (legend_px + height + 6) / fig_h, panel_title, ha="center",
                 va="bottom", fontsize=min(12.0, 0.95 * width / len(panel_title) / 0.83), weight="bold")
        for panel, u, v, text in marker_uv:
            if panel == i:
                ax.plot([u], [v], marker="o", markersize=11, markerfacecolor="none", markeredgecolor="#d00000",
                        markeredgewidth=1.8)
                ax.text(u + 9, v - 9, text, fontsize=8, color="#d00000", weight="bold",
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    if len(images) > 1:
        fig.add_artist(plt.Line2D([0.5, 0.5], [legend_px / fig_h, (legend_px + height + 30) / fig_h], color="#999999",
                                  linewidth=1))
    handles = [Patch(facecolor=np.array(e.rgb) / 255.0, edgecolor=HATCH_RGB / 255.0 if e.hatched else "none",
                     hatch="////" if e.hatched else None, label=e.text) for e in entries]
    if len(colours.legend) > len(entries):
        handles.append(Patch(facecolor="white", edgecolor="none",
                             label=f"... {len(colours.legend) - len(entries)} more"))
    fig.legend(handles=handles, loc="lower center", ncol=columns, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 16 / fig_h), handlelength=1.6, columnspacing=1.2)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, facecolor="white"))
    plt.close(fig)
    return ShowLayout(size=(fig_w, fig_h),
                      panels=[(i * width, title_px, (i + 1) * width, title_px + height) for i in range(len(images))],
                      legend=(0, title_px + height, fig_w, fig_h))


def _marker_positions(scene: ShowScene, xyz: np.ndarray, colours: ShowColours, camera, width: int, height: int,
                      keep: np.ndarray) -> list[tuple[int, float, float, str]]:
    """(panel, u, v, text) of each marker: the projected centroid of the instance's drawn points."""
    panel_index = {"gt": 0, "pred": 1} if scene.gt_ids is not None else {"pred": 0}
    centroids = {}
    for panel in {m[0] for m in colours.markers}:
        ids = np.asarray(scene.gt_ids if panel == "gt" else scene.pred_ids)
        drawn = keep & (ids >= 0)
        count = np.bincount(ids[drawn], minlength=1).astype(np.float64)
        sums = np.stack([np.bincount(ids[drawn], weights=xyz[drawn, axis], minlength=len(count))
                         for axis in range(3)], axis=1)
        centroids[panel] = (sums, count)
    positions = []
    for panel, k, text in colours.markers:
        sums, count = centroids[panel]
        if k >= len(count) or count[k] == 0:
            continue
        uv, depth = project(camera, (sums[k] / count[k])[None], width, height)
        u, v = uv[0]
        if depth[0] > 0 and 0 <= u < width and 0 <= v < height:
            positions.append((panel_index[panel], float(u), float(v), text))
    return positions


def write_show_plys(scene: ShowScene, colours: ShowColours, pred_ply: Path,
                    gt_ply: Optional[Path]) -> list[Path]:
    """Coloured PLYs of the panels (faces kept): the prediction with ``instance`` (-1 none) and
    ``matched_gt`` (-1 FP or none) per vertex; the GT with ``instance`` (-1 none)."""
    written = []
    pred_ids = np.asarray(scene.pred_ids, dtype=np.int32)
    matched = np.full(len(pred_ids), -1, dtype=np.int32)
    if colours.match is not None:
        members = pred_ids >= 0
        matched[members] = colours.match.pred_to_gt[pred_ids[members]]
    write_ply(pred_ply, scene.xyz, colors=colours.pred_rgb, faces=scene.faces,
              extra={"instance": pred_ids, "matched_gt": matched}, double=scene.double)
    written.append(Path(pred_ply))
    if gt_ply is not None and colours.gt_rgb is not None:
        write_ply(gt_ply, scene.xyz, colors=colours.gt_rgb, faces=scene.faces,
                  extra={"instance": np.asarray(scene.gt_ids, dtype=np.int32)}, double=scene.double)
        written.append(Path(gt_ply))
    return written


def render_show(scene: ShowScene, png: str | os.PathLike, *, pred_ply: Optional[str | os.PathLike] = None,
                gt_ply: Optional[str | os.PathLike] = None, width: int = 800, height: int = 600,
                backend: str = "auto", max_points: int = 400_000, timeout_s: float = 120.0) -> ShowResult:
    """Write the side-by-side PNG of ``scene`` (each panel width x height pixels) and the coloured PLYs.

    backend: "auto" | "open3d" | "software" (see :func:`pointformer.vis.render.render_images`); points
    above the ceiling cut are not drawn and at most ``max_points`` are (a fixed-seed subsample).
    """
    colours = colour_scene(scene)
    xyz = scene.local_xyz()
    keep = visible_mask(xyz)
    panels = [colours.gt_rgb, colours.pred_rgb] if colours.gt_rgb is not None else [colours.pred_rgb]
    views = [prepare_view(xyz, rgb, scene.faces, max_points, keep=keep) for rgb in panels]
    camera = room_camera(views[0].xyz, width, height)
    point_size = _point_size(views[0], camera, width, height)
    images, used = render_images(views, camera, width, height, backend=backend, point_size=point_size,
                                 timeout_s=timeout_s)
    png = Path(png)
    layout = _compose(png, images, colours, _marker_positions(scene, xyz, colours, camera, width, height, keep),
                      scene.name)
    plys = write_show_plys(scene, colours, Path(pred_ply), Path(gt_ply) if gt_ply else None) if pred_ply else []
    return ShowResult(png=png, layout=layout, plys=plys, backend=used, colours=colours)


def show_window(scene: ShowScene, colours: ShowColours, *, title: str = "pointformer show") -> None:
    """An Open3D window (needs a display) with the GT panel left of the prediction, 10% of the width apart."""
    from pointformer.vis.viewer import show_instances

    xyz = scene.local_xyz()
    keep = visible_mask(xyz)
    xyz, pred_rgb = xyz[keep], colours.pred_rgb[keep]
    if colours.gt_rgb is None:
        show_instances(xyz, pred_rgb, title=title)
        return
    shift = np.array([(xyz[:, 0].max() - xyz[:, 0].min()) * 1.1, 0.0, 0.0])
    show_instances(np.concatenate([xyz, xyz + shift]), np.concatenate([colours.gt_rgb[keep], pred_rgb]), title=title)
