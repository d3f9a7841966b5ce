"""``pointformer demo 2d``: the 2D branch end to end on a CPU in a few minutes.

1. synthesise a COCO-format set of textured shapes (``pointformer.image.synthetic``; train + val);
2. evaluate the untrained model on the val split (the baseline the training must beat);
3. train the tiny image model with the Influencer Loss (``experiment=demo_2d``; checkpoints, best.pt);
4. evaluate best.pt on the val split: COCO segm AP / AP50 / AP75, the COCO results JSON (RLE);
5. write overlays (instances coloured, class + score labels) of a few val images.

Everything goes under ``--out`` (default ./demo_2d_output); ``summary.json`` lists the numbers.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["run_demo_2d"]


def run_demo_2d(out: Path, *, images: int = 160, val_images: int = 40, size: int = 96, seed: int = 0,
                epochs: Optional[int] = None, overrides: Sequence[str] = (), overlays: int = 4) -> dict[str, Any]:
    """Run the 2D demo into ``out`` (an earlier demo's folders there are replaced); returns the summary
    (also in ``out/summary.json``)."""
    import torch

    from pointformer.config import compose_config
    from pointformer.engine.trainer import seed_everything
    from pointformer.image.build import build_image_model, make_image_dataset
    from pointformer.image.commands import evaluate_image_checkpoint
    from pointformer.image.dataset import read_image
    from pointformer.image.overlay import write_overlay
    from pointformer.image.predictor import ImagePredictor, predict_images
    from pointformer.image.run import run_image_training
    from pointformer.image.settings import ImageRunSettings, ranked_class_overrides
    from pointformer.image.synthetic import generate_shapes2d
    from pointformer.io.atomic import atomic_write_json

    out = Path(out)
    for name in ("shapes2d", "run", "eval_val", "overlays"):  # only what an earlier demo wrote here
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    data_root = out / "shapes2d"
    generate_shapes2d(data_root, num_images=images, num_val_images=val_images, seed=seed, size=size)
    timings["synthesise_s"] = time.perf_counter() - start

    run_dir = out / "run"
    cfg_overrides = ["experiment=demo_2d", f"data.root={data_root}", f"data.image_size={size}", f"run_dir={run_dir}",
                     f"trainer.seed={seed}", "trainer.progress=false", *overrides]
    if epochs is not None:
        cfg_overrides.append(f"trainer.epochs={epochs}")
    cfg = compose_config(cfg_overrides)
    ranked = ranked_class_overrides(str(cfg.loss.name), int(cfg.data.num_classes))
    if ranked and not any(o.startswith("loss.postprocess.classes_per_mask=") for o in overrides):
        cfg_overrides += ranked
        cfg = compose_config(cfg_overrides)

    # the untrained model (the same initial weights as the run: seed_everything before building)
    start = time.perf_counter()
    settings = ImageRunSettings.from_config(cfg)
    seed_everything(settings.trainer.seed)
    untrained = ImagePredictor(settings, build_image_model(settings))
    val_set = make_image_dataset(settings.data, settings.data.val_split or "val", train=False, seed=0)
    baseline = untrained.evaluate(val_set, untrained.predict_dataset(val_set))
    timings["untrained_eval_s"] = time.perf_counter() - start

    start = time.perf_counter()
    result = run_image_training(cfg, overrides=cfg_overrides)
    timings["train_s"] = time.perf_counter() - start

    start = time.perf_counter()
    checkpoint = run_dir / "checkpoints" / "best.pt"
    if not checkpoint.is_file():
        checkpoint = run_dir / "checkpoints" / "last.pt"
    evaluation = evaluate_image_checkpoint(checkpoint, out=out / "eval_val")
    timings["evaluate_s"] = time.perf_counter() - start

    predictor = ImagePredictor.from_checkpoint(checkpoint)
    written = []
    for index in range(min(overlays, len(val_set))):
        sample = val_set[index]
        batch = val_set.collate_fn([sample]).to(predictor.device)
        prediction = predict_images(predictor.model, batch, predictor.postprocessor, seed=settings.eval.seed)[0]
        pixels = read_image(val_set.image_path(index))  # the prediction is at the file's size
        path = write_overlay(out / "overlays" / f"{Path(sample.file_name).stem}.png", pixels, prediction,
                             predictor.class_names)
        written.append(str(path))
    summary = {"output_folder": str(out), "data_root": str(data_root), "run_dir": str(run_dir),
               "checkpoint": str(checkpoint), "train_images": images, "val_images": val_images, "image_size": size,
               "steps": result.step, "untrained": {"ap": baseline.ap, "ap50": baseline.ap50, "ap75": baseline.ap75},
               "trained": {"ap": evaluation.result.ap, "ap50": evaluation.result.ap50, "ap75": evaluation.result.ap75},
               "coco_results": str(evaluation.results_json), "overlays": written,
               "seconds": {k: round(v, 1) for k, v in timings.items()},
               "torch_threads": torch.get_num_threads()}
    atomic_write_json(out / "summary.json", summary, indent=2)
    return summary
