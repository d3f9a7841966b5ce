"""Predict a split with a checkpoint, write the benchmark submission, and validate it before anyone
uploads it (the work of ``pointformer export``).

The input is either a preprocessed root (``<root>/test/manifest.json``) or a raw ScanNet release
(``<root>/scans_test/``), which is preprocessed first (resumable; cached next to the zip unless
``preprocessed_dir`` says where). Validation uses the raw meshes' vertex counts when the raw release
is known (raw input or ``scans``); for a preprocessed input alone it uses the vertex counts stored
in the preprocessed scenes, written as PLY vertex sets for the validator.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pointformer.export import ValidationReport, validate_submission, write_submission
from pointformer.inference import Predictor


def prepare_input(source: Path, split: str, cache: Optional[Path], workers: int) -> tuple[Path, Optional[Path]]:
    """(preprocessed root, raw scans folder or None) for a raw or preprocessed input folder."""
    if (source / split / "manifest.json").is_file():
        return source, None
    raw_scans = source / ("scans_test" if split == "test" else "scans")
    if raw_scans.is_dir():
        from pointformer.preprocess.scannet import preprocess_scannet

        target = cache or source.parent / f"{source.name}_preprocessed"
        print(f"preprocessing {raw_scans} -> {target} (resumable; re-runs skip finished scenes)")
        summary = preprocess_scannet(source, target, workers=workers, splits=[split])
        print(summary.format())
        if not summary.ok:
            raise ValueError(f"preprocessing failed for {len(summary.failed)} scene(s); see above")
        return target, raw_scans
    raise ValueError(f"{source}: neither a preprocessed root ({split}/manifest.json) nor a raw ScanNet release "
                     f"({raw_scans.name}/ folder)")


def scans_from_preprocessed(folder: Path, scenes: Sequence[tuple[str, np.ndarray]]) -> Path:
    """A scans folder whose <scene>_vh_clean_2.ply files carry the preprocessed vertices xyz [V, 3]
    (for the validator, which reads only the vertex counts)."""
    from pointformer.io.ply import write_ply

    for scene_id, xyz in scenes:
        write_ply(folder / scene_id / f"{scene_id}_vh_clean_2.ply", np.asarray(xyz, dtype=np.float32))
    return folder


def export_submission(predictor: Predictor, source: Path, out_zip: Path, *, split: str = "test",
                      scans: Optional[Path] = None, preprocessed_dir: Optional[Path] = None, workers: int = 1,
                      limit: Optional[int] = None) -> ValidationReport:
    """Predict ``split`` of ``source`` (raw or preprocessed), write ``out_zip`` and validate it.

    Raises ValueError for an input that is neither layout, a failed preprocessing, or predictions
    that do not cover the mesh vertices; the returned report lists the submission's problems.
    """
    if out_zip.suffix != ".zip":
        raise ValueError(f"{out_zip}: the submission must be a .zip file")
    root, raw_scans = prepare_input(source, split, preprocessed_dir, workers)
    dataset, scenes = predictor.predict_split(split, data_root=root, limit=limit)
    predictions = {}
    for scene in scenes:
        if scene.prediction.num_vertices != scene.num_mesh_vertices:
            raise ValueError(f"{scene.scene_id}: prediction covers {scene.prediction.num_vertices} points but the mesh "
                             f"has {scene.num_mesh_vertices} vertices (the preprocessed scene does not keep the mesh "
                             f"vertex order)")
        predictions[scene.scene_id] = scene.prediction
    protocol = predictor.settings.data.dataset
    write_submission(out_zip, predictions, dataset=protocol)
    num_masks = sum(p.num_masks for p in predictions.values())
    print(f"wrote {out_zip}: {len(predictions)} scenes, {num_masks} instances (checkpoint step {predictor.step})")
    scans = scans or raw_scans
    with tempfile.TemporaryDirectory(prefix="pointformer_scans_") as tmp:
        if scans is None:
            print("validating against the vertex counts of the preprocessed scenes (pass --scans RAW/scans_test "
                  "to check against the raw meshes)")
            scans = scans_from_preprocessed(Path(tmp), [(scene.scene_id, dataset.load(i).xyz)
                                                        for i, scene in enumerate(scenes)])
        return validate_submission(out_zip, scans, dataset=protocol)
