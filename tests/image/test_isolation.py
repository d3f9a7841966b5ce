"""The 2D branch and the 3D path do not load each other's modules, and 2D trains the shared decoder
and criterion (the same classes, imported, not copied)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

THREE_D = ("pointformer.sparse", "pointformer.models.backbone3d", "pointformer.models.segmentor",
           "pointformer.data.dataset", "pointformer.data.collate", "pointformer.data.targets",
           "pointformer.evaluation", "pointformer.io.scannet", "pointformer.io.scene", "pointformer.io.ply",
           "pointformer.synthetic", "pointformer.preprocess.scannet", "pointformer.preprocess.s3dis",
           "pointformer.preprocess.cloud_segmentator")


def _loaded_after(imports: list[str]) -> list[str]:
    """The pointformer modules in sys.modules after importing ``imports`` in a fresh interpreter."""
    code = ("import importlib, json, sys\n"
            f"for name in {imports!r}:\n    importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('pointformer'))))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".") or (
        prefix.count(".") == 1 and module.startswith(prefix))  # pointformer.sparse* / evaluation* / synthetic*


def test_2d_training_path_loads_no_3d_module():
    loaded = _loaded_after(["pointformer.image.model", "pointformer.image.task", "pointformer.image.run",
                            "pointformer.image.predictor", "pointformer.image.commands", "pointformer.image.demo"])
    assert "pointformer.image.run" in loaded and "pointformer.engine.trainer" in loaded
    leaked = sorted(m for m in loaded if any(_matches(m, p) for p in THREE_D))
    assert leaked == [], f"the 2D path imported 3D modules: {leaked}"


def test_3d_path_loads_no_2d_module():
    loaded = _loaded_after(["pointformer.engine.run", "pointformer.engine.task", "pointformer.build",
                            "pointformer.inference.predictor", "pointformer.cli.train", "pointformer.cli.infer",
                            "pointformer.cli.evaluate", "pointformer.cli.demo"])
    assert "pointformer.data.dataset" in loaded and "pointformer.evaluation" in loaded  # the probe loads 3D
    leaked = sorted(m for m in loaded if m.startswith("pointformer.image"))
    assert leaked == [], f"the 3D path imported 2D modules: {leaked}"


def test_2d_uses_the_shared_decoder_and_criterion():
    from pointformer.config import compose_config
    from pointformer.image.build import build_image_model
    from pointformer.image.settings import ImageRunSettings
    from pointformer.image.task import ImageSegmentationTask
    from pointformer.losses import InstanceCriterion
    from pointformer.models.decoder import QueryDecoder

    for loss in ("influencer", "hungarian"):
        settings = ImageRunSettings.from_config(compose_config(["experiment=demo_2d", f"loss={loss}"]))
        model = build_image_model(settings)
        assert type(model.decoder) is QueryDecoder
        assert model.decoder.pos_dim == 2
        task = ImageSegmentationTask.from_settings(settings, coco_gt=None, class_to_category_id=[1, 2, 3, 4])
        assert type(task.criterion) is InstanceCriterion
        assert task.criterion.definition.name == loss
        assert model.decoder.mask_activation == ("ownership" if loss == "influencer" else "sigmoid")


def test_every_image_experiment_composes_and_builds():
    from pointformer.config import CONFIG_DIR, compose_config
    from pointformer.image.build import build_image_model
    from pointformer.image.settings import ImageRunSettings, is_image_config
    from pointformer.losses import get_loss

    found = []
    for experiment in sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")):
        cfg = compose_config([f"experiment={experiment}"])
        if not is_image_config(cfg):
            continue
        found.append(experiment)
        settings = ImageRunSettings.from_config(cfg)
        model = build_image_model(settings)
        assert model.mask_activation == get_loss(settings.loss.name).activation
        assert settings.data.root is None  # the data path is always the user's to give
    assert "demo_2d" in found
