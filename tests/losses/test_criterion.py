"""The batch / deep-supervision criterion, configs, DDP normalisation, and the real decoder."""
from __future__ import annotations

import os
import tempfile
import warnings

import pytest
import torch
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from pointformer.build import build_model, decoder_query_setup
from pointformer.config import LossSettings, RunSettings, compose_config
from pointformer.config.compose import CONFIG_DIR
from pointformer.losses import (InstanceCriterion, SceneInputs, SceneLossInputs, StagePrediction, TokenTargets,
                                build_criterion, get_loss, registered_losses, scene_loss)

LOSS_CONFIG_DIR = CONFIG_DIR / "loss"
# the package's losses (a test may register a toy loss of its own)
SHIPPED = sorted(n for n in registered_losses() if get_loss(n).terms.__module__.startswith("pointformer.losses"))


def _batch(num_layers=3, n=(6, 5), p=(30, 22), k=(3, 2), c=4, seed=0, ownership=True):
    g = torch.Generator().manual_seed(seed)
    targets, seeds = [], []
    for nb, pb, kb in zip(n, p, k):
        inst = torch.randint(-1, kb + 1, (pb,), generator=g)
        inst[: kb + 1] = torch.arange(kb + 1)
        targets.append(TokenTargets(inst, torch.rand(pb, generator=g) + 0.5, torch.randint(0, c, (kb,), generator=g)))
        seeds.append(torch.randperm(pb, generator=g)[:nb])
    layers = []
    for _ in range(num_layers):
        layers.append(StagePrediction(
            class_logits=[torch.randn(nb, c + 1, generator=g, requires_grad=True) for nb in n],
            mask_logits=[torch.randn(nb, pb, generator=g, requires_grad=True) for nb, pb in zip(n, p)],
            background_logits=[torch.randn(pb, generator=g, requires_grad=True) for pb in p] if ownership else None,
        ))
    return layers, seeds, targets


@pytest.mark.parametrize("name", SHIPPED)
def test_criterion_equals_scene_losses_over_scenes_and_layers(name):
    definition = get_loss(name)
    ownership = definition.activation == "ownership"
    matching = definition.matcher is not None
    assert definition.batch_normalised_terms == (("bce", "dice") if matching else ())
    layers, seeds, targets = _batch(ownership=ownership)
    crit = InstanceCriterion(loss=name, layer_weights=[0.5, 1.0, 2.0])
    out = crit(layers, seeds, targets)
    expected = 0.0
    total_masks = sum(t.num_instances for t in targets)  # every instance of _batch owns weight
    for lw, layer in zip([0.5, 1.0, 2.0], layers):
        per_scene = []
        for b, t in enumerate(targets):
            inputs = SceneInputs(mask_logits=layer.mask_logits[b], class_logits=layer.class_logits[b], targets=t,
                                 background_logits=layer.background_logits[b] if ownership else None,
                                 query_seed_token=seeds[b])
            per_scene.append((t.num_instances, scene_loss(name, inputs)))
        if matching:
            # scene_loss divides BCE/dice by the scene's mask count; the criterion by the batch's
            # (and sums over scenes); the class term is averaged over scenes
            layer_loss = sum(2 * s["cls"] / len(per_scene) + (5 * s["bce"] + 2 * s["dice"]) * k / total_masks
                             for k, s in per_scene)
        else:
            layer_loss = sum(s["loss"] for _, s in per_scene) / len(per_scene)
        expected = expected + lw * layer_loss
    assert float(out["loss"].detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    out["loss"].backward()
    for layer in layers:  # every stage and scene receives gradient (deep supervision)
        assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in layer.mask_logits)
        assert all(c.grad is not None and c.grad.abs().sum() > 0 for c in layer.class_logits)
        if ownership:
            assert all(bg.grad is not None and bg.grad.abs().sum() > 0 for bg in layer.background_logits)
    assert "layer0/cls" in out and "cls" in out and not out["cls"].requires_grad


def test_term_weights_override_and_validation():
    layers, seeds, targets = _batch()
    base = InstanceCriterion(loss="influencer")(layers, seeds, targets)
    no_cls = InstanceCriterion(loss="influencer", term_weights={"cls": 0.0})(layers, seeds, targets)
    assert float(base["loss"].detach() - no_cls["loss"].detach()) == pytest.approx(
        2.0 * sum(float(base[f"layer{i}/cls"]) for i in range(3)), rel=1e-5)
    with pytest.raises(ValueError, match="no term 'dice'"):
        InstanceCriterion(loss="influencer", term_weights={"dice": 1.0})
    with pytest.raises(ValueError, match="no hyper-parameters"):
        InstanceCriterion(loss="hungarian", temperature=0.5)
    with pytest.raises(ValueError, match="no hyper-parameters"):
        InstanceCriterion(loss="hungarian", cost_bce=5.0)  # the old name of bce_weight
    with pytest.raises(ValueError, match="no hyper-parameters"):
        InstanceCriterion(loss="influencer", tau=0.5)  # the old name of temperature
    with pytest.raises(ValueError, match="unknown loss"):
        InstanceCriterion(loss="sinkhorn")
    with pytest.raises(ValueError, match="temperature"):
        InstanceCriterion(loss="influencer", temperature=1.0)
    with pytest.raises(ValueError, match="layer_weights"):
        InstanceCriterion(loss="influencer", layer_weights=[1.0])(layers, seeds, targets)


def test_bad_targets_name_the_scene():
    layers, seeds, targets = _batch()
    bad = targets[1]
    targets[1] = TokenTargets(bad.token_instance.clone().fill_(7), bad.token_weight, bad.instance_class)
    with pytest.raises(ValueError, match="scene 1 .*token_instance"):
        InstanceCriterion(loss="influencer")(layers, seeds, targets)
    with pytest.raises(ValueError, match="background_logits"):
        InstanceCriterion(loss="influencer")(_batch(ownership=False)[0], seeds, targets)


def test_objectness_term_list_or_flat():
    layers, seeds, targets = _batch()
    crit = InstanceCriterion(loss="influencer", objectness_weight=0.5)
    g = torch.Generator().manual_seed(5)
    obj = [torch.randn(t.num_tokens, generator=g, requires_grad=True) for t in targets]
    plain = crit(layers, seeds, targets)
    with_obj = crit(layers, seeds, targets, token_objectness=obj)
    flat = crit(layers, seeds, targets, token_objectness=torch.cat(obj))
    expected = []
    for o, t in zip(obj, targets):
        keep = t.token_instance >= 0
        bce = torch.nn.functional.binary_cross_entropy_with_logits(o[keep], (t.token_instance[keep] > 0).float(),
                                                                   reduction="none")
        expected.append((bce * t.token_weight[keep]).sum() / t.token_weight[keep].sum())
    expected = torch.stack(expected).mean()
    assert float(with_obj["objectness"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(with_obj["loss"] - plain["loss"]) == pytest.approx(0.5 * float(expected), rel=1e-5)
    assert float(flat["loss"]) == pytest.approx(float(with_obj["loss"]), rel=1e-6)
    with_obj["loss"].backward()
    ignore = targets[0].token_instance < 0
    assert (obj[0].grad[ignore] == 0).all() and (obj[0].grad[~ignore] != 0).any()


def test_seeded_loss_without_seeds_warns_once():
    layers, seeds, targets = _batch()
    crit = InstanceCriterion(loss="influencer")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crit(layers, None, targets)
        crit(layers, [torch.full((6,), -1), torch.full((5,), -1)], targets)
        crit(layers, seeds, targets)
    assert sum("unseeded" in str(w.message) for w in caught) == 1
    # the unseeded ablation ignores seeds by declaration: no warning, with or without them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        InstanceCriterion(loss="influencer_unseeded")(layers, None, targets)
        InstanceCriterion(loss="influencer_unseeded")(layers, seeds, targets)
    assert not [w for w in caught if "seeds" in str(w.message)]
    # scene_loss: once per call
    inputs = SceneInputs(mask_logits=layers[0].mask_logits[0], class_logits=layers[0].class_logits[0],
                         targets=targets[0], background_logits=layers[0].background_logits[0])
    for _ in range(2):
        with pytest.warns(UserWarning, match="got no query seeds"):
            scene_loss("influencer", inputs)


@pytest.mark.parametrize("path", sorted(LOSS_CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_build(path):
    from pointformer.inference.postprocess import Postprocessor

    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert "activation" not in cfg["postprocess"] and "query_init" not in cfg  # the registry holds them
    crit = build_criterion(cfg)
    assert crit.definition is get_loss(path.stem)
    post = Postprocessor.from_settings(LossSettings.from_mapping(cfg))
    assert post.activation == get_loss(path.stem).activation == crit.mask_activation
    layers, seeds, targets = _batch(ownership=crit.mask_activation == "ownership")
    assert torch.isfinite(crit(layers, seeds, targets)["loss"])


def test_every_loss_config_is_a_registered_loss_and_every_shipped_loss_has_one():
    configs = {p.stem for p in LOSS_CONFIG_DIR.glob("*.yaml")}
    assert configs == set(SHIPPED)
    assert configs <= set(registered_losses())
    assert {"influencer", "influencer_sigmoid", "influencer_unseeded", "hungarian", "greedy"} <= configs
    for stem in configs:  # the config names the loss it configures
        assert OmegaConf.load(LOSS_CONFIG_DIR / f"{stem}.yaml").name == stem


@pytest.mark.parametrize("loss, activation, query_init", [
    ("influencer", "ownership", "seeded"),
    ("influencer_sigmoid", "sigmoid", "seeded"),
    ("hungarian", "sigmoid", "learned"),
    ("greedy", "sigmoid", "learned"),
    ("influencer_unseeded", "ownership", "learned"),  # the reference ablation used learned queries
])
def test_loss_config_composes_to_its_decoder_setup(loss, activation, query_init):
    settings = RunSettings.from_config(compose_config([f"loss={loss}"]))
    assert settings.model.decoder.get("query_init") is None  # the model config leaves the choice to the loss
    setup = decoder_query_setup(settings)
    assert (setup.mask_activation, setup.query_init) == (activation, query_init)
    with warnings.catch_warnings():  # learned queries ignore the config's eval_num_queries (with a warning)
        warnings.simplefilter("ignore", UserWarning)
        model = build_model(settings)
    assert (model.decoder.mask_activation, model.decoder.query_init) == (activation, query_init)


def test_model_config_may_override_the_query_init_of_the_loss():
    settings = RunSettings.from_config(compose_config(["loss=hungarian", "model.decoder.query_init=seeded"]))
    setup = decoder_query_setup(settings)
    assert (setup.mask_activation, setup.query_init) == ("sigmoid", "seeded")


def _ddp_worker(rank: int, world: int, init_file: str, result_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        layers, seeds, targets = _batch(num_layers=1, n=(6,), p=(30,), k=(2 + 4 * rank,), seed=rank, ownership=False)
        out = InstanceCriterion(loss="hungarian")(layers, None, targets)
        torch.save({"bce": out["bce"]}, os.path.join(result_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _matched_bce(layer, targets, num_masks):
    """Σ over scenes of the matched BCE divided by `num_masks` (the terms function itself, on the
    criterion's assignment)."""
    from pointformer.losses.hungarian import matched_terms

    crit = InstanceCriterion(loss="hungarian")
    scenes = crit.prepare(layer, None, targets)
    total = 0.0
    for b, (scene, assignment) in enumerate(zip(scenes, crit.assign(layer, scenes))):
        inputs = SceneLossInputs(mask_logits=layer.mask_logits[b], class_logits=layer.class_logits[b],
                                 background_logits=None, scene=scene, assignment=assignment, num_masks=num_masks)
        assert assignment[0].numel() == scene.num_valid_instances  # 6 queries: every instance matched
        total += float(matched_terms(inputs, **crit.hyper_parameters)["bce"])
    return total


def test_hungarian_normaliser_uses_the_world_mean(monkeypatch):
    """Fast variant of the gloo test below: the criterion divides by the all-reduced mean."""
    import pointformer.losses.criterion as criterion_module

    seen = []

    def fake_world_mean(value, device):
        seen.append(value)
        return 10.0  # as if the other ranks held many more masks

    monkeypatch.setattr(criterion_module, "_world_mean", fake_world_mean)
    layers, _, targets = _batch(num_layers=1, ownership=False)
    out = InstanceCriterion(loss="hungarian")(layers, None, targets)
    assert seen == [5.0]  # this rank: 3 + 2 masks
    assert float(out["bce"]) == pytest.approx(_matched_bce(layers[0], targets, 10.0), rel=1e-6)
    assert float(out["bce"]) != pytest.approx(_matched_bce(layers[0], targets, 5.0), rel=1e-3)  # can fail


@pytest.mark.slow
def test_hungarian_normaliser_is_averaged_over_ddp_ranks():
    """Mask3D: num_masks all-reduced and divided by the world size. Rank 0 has 2 masks, rank 1 has 6:
    both divide their BCE sums by 4."""
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_ddp_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        for rank in range(2):
            got = float(torch.load(os.path.join(tmp, f"{rank}.pt"), weights_only=True)["bce"])
            layers, _, targets = _batch(num_layers=1, n=(6,), p=(30,), k=(2 + 4 * rank,), seed=rank, ownership=False)
            assert got == pytest.approx(_matched_bce(layers[0], targets, 4.0), rel=1e-6)


def _decoder_for(name, **kwargs):
    """A small QueryDecoder with the mask activation and the queries the loss declares."""
    from pointformer.losses import query_setup
    from pointformer.models.decoder import QueryDecoder

    setup = query_setup(name)
    return QueryDecoder(token_dim=8, hidden_dim=16, num_heads=2, ffn_dim=32, num_layers=2, num_classes=3,
                        query_init=setup.query_init, mask_activation=setup.mask_activation, **kwargs)


@pytest.mark.parametrize("name", SHIPPED)
def test_with_the_real_query_decoder(name):
    """The loss reaches every decoder parameter: class and mask heads, the background embedding
    (ownership), the seed projection (seeded) or the learned query embeddings (learned), and every
    layer's attention and FFN weights (through the masks of the later stages). None is expected
    to stay untouched (this decoder has no objectness head)."""
    from pointformer.models.tokens import Tokens

    g = torch.Generator().manual_seed(0)
    counts = [40, 25]
    offsets = torch.tensor([0, 40, 65])
    tokens = Tokens(features=torch.randn(65, 8, generator=g), positions=torch.rand(65, 3, generator=g),
                    weights=torch.ones(65), offsets=offsets)
    torch.manual_seed(0)
    decoder = _decoder_for(name, num_queries=10)
    out = decoder(tokens)
    assert out.token_objectness is None
    targets = []
    for p in counts:
        inst = torch.arange(p) % 4  # 3 instances + background
        targets.append(TokenTargets(inst, torch.ones(p), torch.tensor([0, 1, 2])))
    crit = InstanceCriterion(loss=name)
    loss = crit(out.layers, out.query_seed_token, targets, out.token_objectness)
    loss["loss"].backward()
    assert torch.isfinite(loss["loss"])
    params = dict(decoder.named_parameters())
    assert len(params) > 20
    untouched = [n for n, p in params.items() if p.grad is None]
    assert not untouched, f"parameters the loss does not reach: {untouched}"
    bad = [n for n, p in params.items() if not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0]
    assert not bad, f"parameters with a non-finite or zero gradient: {bad}"


@pytest.mark.parametrize("name", ["influencer", "hungarian"])
def test_real_decoder_under_bf16_autocast(name):
    """Mixed precision end to end: a bf16-autocast decoder, the criterion inside the autocast
    region (as a training loop runs it), finite loss and parameter gradients."""
    from pointformer.models.tokens import Tokens

    g = torch.Generator().manual_seed(1)
    tokens = Tokens(features=torch.randn(50, 8, generator=g) * 30, positions=torch.rand(50, 3, generator=g),
                    weights=torch.full((50,), 40.0), offsets=torch.tensor([0, 50]))
    decoder = _decoder_for(name, num_queries=12)
    targets = [TokenTargets(torch.arange(50) % 5, torch.full((50,), 40.0), torch.tensor([0, 1, 2, 0]))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = decoder(tokens)
        assert out.final.mask_logits[0].dtype == torch.bfloat16
        losses = InstanceCriterion(loss=name)(out.layers, out.query_seed_token, targets, out.token_objectness)
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    missing = [n for n, p in decoder.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"
