"""A new loss is one module-level declaration plus one config: no edit of the package.

The toy loss below ("cover every foreground token with some query, predict no-object") is
declared here, its YAML lives in tests/losses/configs/loss/, and it trains through the normal
config composition and ``run_training``.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from pointformer.build import build_model, decoder_query_setup
from pointformer.config import RunSettings, compose_config
from pointformer.data.toy import write_toy_split
from pointformer.engine.metrics_log import read_metrics
from pointformer.engine.run import run_training
from pointformer.losses import InstanceCriterion, LossDefinition, SceneLossInputs, get_loss, register_loss
from pointformer.losses.terms import upcast

CONFIGS = Path(__file__).parent / "configs"


def coverage_terms(inputs: SceneLossInputs, *, scale: float) -> dict[str, Tensor]:
    """cover: weighted BCE of "the most confident query claims token p" against foreground;
    cls: every query predicts no-object. Both scalars."""
    scene = inputs.scene
    claimed = torch.sigmoid(upcast(inputs.mask_logits)).amax(0).clamp(1e-6, 1 - 1e-6)  # [P]
    target = torch.zeros_like(claimed).index_fill(0, scene.fg_index, 1.0)
    weight = scene.valid_weight_full.to(claimed.dtype)
    cover = F.binary_cross_entropy(claimed, target, weight=weight, reduction="sum") / weight.sum().clamp_min(1e-6)
    logits = upcast(inputs.class_logits)
    no_object = torch.full((logits.shape[0],), logits.shape[1] - 1, dtype=torch.long, device=logits.device)
    return {"cover": scale * cover, "cls": F.cross_entropy(logits, no_object)}


TOY = register_loss(LossDefinition(name="toy_coverage", terms=coverage_terms, activation="sigmoid",
                                   query_init="learned", uses_seeds=False, term_weights={"cover": 1.0, "cls": 1.0},
                                   defaults={"scale": 1.0}))


def test_registry_holds_the_declaration() -> None:
    assert get_loss("toy_coverage") is TOY
    with pytest.raises(ValueError, match="already registered"):
        register_loss(LossDefinition(name="toy_coverage", terms=coverage_terms, activation="ownership",
                                     query_init="seeded", uses_seeds=True, term_weights={"cover": 1.0}))
    with pytest.raises(ValueError, match="unknown loss 'toy_coverag'.*toy_coverage"):
        get_loss("toy_coverag")
    with pytest.raises(ValueError, match=r"has no hyper-parameters \['temperature'\]"):
        InstanceCriterion(loss="toy_coverage", temperature=0.5)


def test_toy_loss_trains_two_steps_through_the_normal_composition(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    root = tmp_path / "data"
    write_toy_split(root, "train", num_scenes=2, seed=0, num_points=600, num_objects=2)
    write_toy_split(root, "val", num_scenes=1, seed=1, num_points=600, num_objects=2)
    cfg = compose_config(["loss=toy_coverage", f"data.root={root}", f"run_dir={tmp_path / 'run'}", "trainer.epochs=1",
                          "trainer.batch_size=1", "trainer.num_workers=0", "trainer.log_every=1",
                          "trainer.progress=false", "trainer.tensorboard=false", "data.augment.elastic=null",
                          "model.decoder.eval_num_queries=null"],
                         search_path=[CONFIGS])
    settings = RunSettings.from_config(cfg)
    setup = decoder_query_setup(settings)
    assert (setup.mask_activation, setup.query_init) == ("sigmoid", "learned")  # from the declaration
    assert build_model(settings).mask_activation == "sigmoid"

    result = run_training(cfg)
    assert result.step == 2
    train = read_metrics(tmp_path / "run" / "metrics.jsonl", "train")
    assert [r["step"] for r in train] == [1, 2]
    assert all(r["cover"] > 0 and torch.isfinite(torch.tensor(r["loss"])) for r in train)
    assert "map50" in read_metrics(tmp_path / "run" / "metrics.jsonl", "val")[-1]  # validated with its postprocessing
    assert "name: toy_coverage" in (tmp_path / "run" / "config.yaml").read_text()
