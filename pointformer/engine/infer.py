"""``pointformer infer SCAN.ply``: instances on one custom scan, written as a coloured PLY, a
per-vertex instance file and a JSON list of instances (and a PNG view with ``--png``).

Superpoints: a triangle mesh goes through the mesh segmentator (as ScanNet scenes do); a bare point
cloud is cut into cubic cells of ``--cell`` metres (superpoints need no mesh). The scan should be
z-up and in metres, like ScanNet; colours are used when present (grey otherwise).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

log = logging.getLogger("pointformer")


def _fail(message: str, status: int = 2) -> int:
    print(f"pointformer infer: error: {message}", file=sys.stderr)
    return status


def cell_superpoints(xyz: np.ndarray, cell: float) -> np.ndarray:
    """int64 [V] contiguous ids of the ``cell``-metre cubes the points fall in (superpoints of a bare cloud)."""
    if not cell > 0:
        raise ValueError(f"--cell must be positive, got {cell}")
    keys = np.floor((xyz - xyz.min(axis=0)) / cell).astype(np.int64)
    return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def find_default_checkpoint(search: Sequence[Path] = (Path("outputs"), Path("demo_output"))) -> Optional[Path]:
    """The newest best.pt under ./outputs or ./demo_output (what a user who just trained expects)."""
    found = [p for root in search if root.is_dir() for p in root.rglob("best.pt")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def infer_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pointformer infer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scan", help="a .ply mesh or point cloud (x y z, optional red green blue, optional faces)")
    parser.add_argument("--checkpoint", default=None,
                        help="trained checkpoint (default: the newest best.pt under ./outputs or ./demo_output)")
    parser.add_argument("--out", default=None, help="output folder (default: <scan name>_instances next to the scan)")
    parser.add_argument("--cell", type=float, default=0.1, help="superpoint cell size in metres for point clouds (default 0.1)")
    parser.add_argument("--min-points", type=int, default=50, help="drop instances with fewer points (default 50)")
    parser.add_argument("--png", action="store_true", help="also render a PNG view (Open3D offscreen, matplotlib fallback)")
    parser.add_argument("--show", action="store_true", help="open an Open3D viewer window")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the checkpoint config (e.g. eval.num_queries=150)")
    args = parser.parse_args(list(argv))

    from pointformer.engine.checkpoint import CheckpointError
    from pointformer.engine.config import ConfigError
    from pointformer.engine.predict import load_trained, predict_scan
    from pointformer.io.labels import SCANNET_INSTANCE_IDS, SCANNET_INSTANCE_NAMES
    from pointformer.io.ply import read_ply

    scan = Path(args.scan)
    checkpoint = Path(args.checkpoint) if args.checkpoint else find_default_checkpoint()
    if checkpoint is None:
        return _fail("no --checkpoint given and no best.pt under ./outputs or ./demo_output; train one "
                     "(`pointformer demo` or `pointformer train ...`) and pass --checkpoint PATH")
    try:
        mesh = read_ply(scan)
        cfg, model, _ = load_trained(checkpoint, args.overrides, device=args.device)
        xyz = mesh.vertices.astype(np.float32)
        if mesh.colors is None:
            log.warning("%s has no colours; using grey (the model was trained on coloured scans)", scan)
        rgb = mesh.colors if mesh.colors is not None else np.full((len(xyz), 3), 128, np.uint8)
        if mesh.faces is not None and len(mesh.faces):
            from pointformer.preprocess.segmentator import segment_mesh, vertex_normals

            normals = vertex_normals(xyz, mesh.faces)
            superpoint = np.unique(segment_mesh(xyz, mesh.faces), return_inverse=True)[1].reshape(-1)
            source = f"mesh segmentator ({int(superpoint.max()) + 1} superpoints)"
        else:
            normals = np.zeros_like(xyz)
            superpoint = cell_superpoints(xyz, args.cell)
            source = f"{args.cell} m cells ({int(superpoint.max()) + 1} superpoints)"
        if cfg.data.dataset != "scannet":
            raise ValueError(f"infer supports ScanNet-trained checkpoints; this one was trained on {cfg.data.dataset}")
        result = predict_scan(cfg, model, xyz=xyz, rgb=rgb, normals=normals, superpoint=superpoint,
                              class_ids=SCANNET_INSTANCE_IDS, class_names=SCANNET_INSTANCE_NAMES, min_points=args.min_points)
    except (ConfigError, CheckpointError, ValueError) as exc:
        return _fail(str(exc))

    from pointformer.vis import render_png, write_instance_ply

    out = Path(args.out) if args.out else scan.parent / f"{scan.stem}_instances"
    out.mkdir(parents=True, exist_ok=True)
    ply_path, txt_path, json_path = out / f"{scan.stem}_instances.ply", out / f"{scan.stem}_instances.txt", out / f"{scan.stem}_instances.json"
    colors = write_instance_ply(ply_path, xyz, result.instance, faces=mesh.faces, base_rgb=rgb)
    np.savetxt(txt_path, result.instance, fmt="%d")
    instances = [{"id": i + 1, "class_id": int(c), "class": n, "score": float(s), "num_points": int(k)}
                 for i, (c, n, s, k) in enumerate(zip(result.class_ids, result.class_names, result.scores, result.num_points))]
    json_path.write_text(json.dumps({"scan": str(scan), "checkpoint": str(checkpoint), "superpoints": source,
                                     "num_points": int(len(xyz)), "instances": instances}, indent=1))
    print(f"{scan}: {len(instances)} instances ({source})")
    for inst in instances[:20]:
        print(f"  {inst['id']:3d}  {inst['class']:<16s} score {inst['score']:.3f}  {inst['num_points']} points")
    print(f"wrote {ply_path}\n      {txt_path} (instance id per vertex, 0 = none)\n      {json_path}")
    if args.png:
        backend = render_png(out / f"{scan.stem}_instances.png", xyz, colors, faces=mesh.faces)
        print(f"      {out / f'{scan.stem}_instances.png'} ({backend})")
    if args.show:
        from pointformer.vis.viewer import show_instances

        show_instances(xyz, colors, faces=mesh.faces, title=scan.name)
    return 0
