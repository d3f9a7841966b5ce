"""The batch / deep-supervision criterion, configs, DDP normalisation, and the real decoder."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from omegaconf import OmegaConf

import pointformer
from pointformer.losses import (
    LOSS_FUNCTIONS,
    LOSSES,
    InstanceCriterion,
    TokenTargets,
    build_criterion,
    mask_activation_for,
)

CONFIG_DIR = Path(pointformer.__file__).parent / "configs" / "loss"


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
        layers.append(SimpleNamespace(
            class_logits=[torch.randn(nb, c + 1, generator=g, requires_grad=True) for nb in n],
            mask_logits=[torch.randn(nb, pb, generator=g, requires_grad=True) for nb, pb in zip(n, p)],
            background_logits=[torch.randn(pb, generator=g, requires_grad=True) for pb in p] if ownership else None,
        ))
    return layers, seeds, targets


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_criterion_equals_functional_losses_over_scenes_and_layers(name):
    ownership = mask_activation_for(name) == "ownership"
    layers, seeds, targets = _batch(ownership=ownership)
    crit = InstanceCriterion(loss=name, layer_weights=[0.5, 1.0, 2.0])
    out = crit(layers, seeds, targets)
    expected = 0.0
    total_masks = sum(t.num_instances for t in targets)
    for lw, layer in zip([0.5, 1.0, 2.0], layers):
        per_scene = []
        for b, t in enumerate(targets):
            kwargs = {"num_masks": total_masks} if LOSSES[name].set_loss else {}
            bg = layer.background_logits[b] if ownership else None
            per_scene.append(LOSS_FUNCTIONS[name](layer.mask_logits[b], bg, layer.class_logits[b], t.token_instance,
                                                  t.token_weight, t.instance_class, seeds[b], **kwargs))
        if LOSSES[name].set_loss:  # class term averaged over scenes, BCE/dice summed (normalised by all masks)
            layer_loss = sum(2 * s["cls"] / len(per_scene) + 5 * s["bce"] + 2 * s["dice"] for s in per_scene)
        else:
            layer_loss = sum(s["loss"] for s in per_scene) / len(per_scene)
        expected = expected + lw * layer_loss
    assert float(out["loss"]) == pytest.approx(float(expected), rel=1e-5)
    out["loss"].backward()
    for layer in layers:  # every stage and scene receives gradient (deep supervision)
        assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in layer.mask_logits)
    assert "layer0/cls" in out and "cls" in out and not out["cls"].requires_grad


def test_term_weights_override_and_validation():
    layers, seeds, targets = _batch()
    base = InstanceCriterion(loss="influencer")(layers, seeds, targets)
    no_cls = InstanceCriterion(loss="influencer", term_weights={"cls": 0.0})(layers, seeds, targets)
    assert float(base["loss"]) - float(no_cls["loss"]) == pytest.approx(
        2.0 * sum(float(base[f"layer{i}/cls"]) for i in range(3)), rel=1e-5)
    with pytest.raises(ValueError, match="no term 'dice'"):
        InstanceCriterion(loss="influencer", term_weights={"dice": 1.0})
    with pytest.raises(ValueError, match="no hyper-parameters"):
        InstanceCriterion(loss="hungarian", temperature=0.5)
    with pytest.raises(ValueError, match="unknown loss"):
        InstanceCriterion(loss="sinkhorn")
    with pytest.raises(ValueError, match="temperature"):
        InstanceCriterion(loss="influencer", temperature=1.0)
    with pytest.raises(ValueError, match="layer_weights"):
        InstanceCriterion(loss="influencer", layer_weights=[1.0])(layers, seeds, targets)


def test_bad_targets_name_the_scene():
    layers, seeds, targets = _batch()
    targets[1] = TokenTargets(targets[1].token_instance.clone().fill_(7), targets[1].token_weight, targets[1].instance_class)
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
        bce = torch.nn.functional.binary_cross_entropy_with_logits(o[keep], (t.token_instance[keep] > 0).float(), reduction="none")
        expected.append((bce * t.token_weight[keep]).sum() / t.token_weight[keep].sum())
    expected = torch.stack(expected).mean()
    assert float(with_obj["objectness"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(with_obj["loss"] - plain["loss"]) == pytest.approx(0.5 * float(expected), rel=1e-5)
    assert float(flat["loss"]) == pytest.approx(float(with_obj["loss"]), rel=1e-6)
    with_obj["loss"].backward()
    ignore = targets[0].token_instance < 0
    assert (obj[0].grad[ignore] == 0).all() and (obj[0].grad[~ignore] != 0).any()


def test_seeded_loss_without_seeds_warns_once():
    layers, _, targets = _batch()
    crit = InstanceCriterion(loss="influencer")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crit(layers, None, targets)
        crit(layers, [torch.full((6,), -1), torch.full((5,), -1)], targets)
    assert sum("unseeded" in str(w.message) for w in caught) == 1


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_build(path):
    from pointformer.inference.postprocess import Postprocessor

    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    crit = build_criterion(cfg)
    assert crit.loss_name == path.stem
    post = Postprocessor.from_config(cfg["postprocess"])
    assert post.activation == mask_activation_for(path.stem) == crit.mask_activation
    layers, seeds, targets = _batch(ownership=crit.mask_activation == "ownership")
    assert torch.isfinite(crit(layers, seeds, targets)["loss"])


def test_every_registered_loss_has_a_config():
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} == set(LOSSES)


def _ddp_worker(rank: int, world: int, init_file: str, result_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        layers, seeds, targets = _batch(num_layers=1, n=(6,), p=(30,), k=(2 + 4 * rank,), seed=rank)
        layers[0].background_logits = None
        out = InstanceCriterion(loss="hungarian")(layers, None, targets)
        torch.save({"bce": out["bce"]}, os.path.join(result_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_hungarian_normaliser_uses_the_world_mean(monkeypatch):
    """Fast variant of the gloo test below: the criterion divides by the all-reduced mean."""
    import pointformer.losses.criterion as criterion_module
    from pointformer.losses.hungarian import matched_terms
    from pointformer.losses.targets import prepare_scene

    seen = []

    def fake_world_mean(value, device):
        seen.append(value)
        return 10.0  # as if the other ranks held many more masks

    monkeypatch.setattr(criterion_module, "_world_mean", fake_world_mean)
    layers, _, targets = _batch(num_layers=1, ownership=False)
    out = InstanceCriterion(loss="hungarian")(layers, None, targets)
    assert seen == [5.0]  # this rank: 3 + 2 masks
    expected = 0.0
    for b, t in enumerate(targets):
        scene = prepare_scene(t.token_instance, t.token_weight, t.instance_class, None, layers[0].mask_logits[b].shape[0])
        terms, _, _ = matched_terms(layers[0].mask_logits[b], layers[0].class_logits[b], scene, num_masks=10.0)
        expected += float(terms["bce"])
    assert float(out["bce"]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_hungarian_normaliser_is_averaged_over_ddp_ranks():
    """Mask3D: num_masks all-reduced and divided by the world size. Rank 0 has 2 masks, rank 1 has 6:
    both divide their BCE sums by 4."""
    from pointformer.losses.hungarian import matched_terms
    from pointformer.losses.targets import prepare_scene

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_ddp_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        for rank in range(2):
            got = float(torch.load(os.path.join(tmp, f"{rank}.pt"), weights_only=True)["bce"])
            layers, _, targets = _batch(num_layers=1, n=(6,), p=(30,), k=(2 + 4 * rank,), seed=rank)
            t = targets[0]
            scene = prepare_scene(t.token_instance, t.token_weight, t.instance_class, None, 6)
            ref, _, _ = matched_terms(layers[0].mask_logits[0], layers[0].class_logits[0], scene, num_masks=4.0)
            assert got == pytest.approx(float(ref["bce"]), rel=1e-6)


@pytest.mark.parametrize("name", ["influencer", "influencer_sigmoid", "hungarian"])
def test_with_the_real_query_decoder(name):
    models = pytest.importorskip("pointformer.models.decoder")
    from pointformer.models.tokens import Tokens

    g = torch.Generator().manual_seed(0)
    counts = [40, 25]
    offsets = torch.tensor([0, 40, 65])
    tokens = Tokens(features=torch.randn(65, 8, generator=g), positions=torch.rand(65, 3, generator=g),
                    weights=torch.ones(65), offsets=offsets)
    decoder = models.QueryDecoder(token_dim=8, hidden_dim=16, num_heads=2, ffn_dim=32, num_layers=2, num_classes=3,
                                  num_queries=10, query_init="seeded" if name != "hungarian" else "learned",
                                  mask_activation=mask_activation_for(name))
    out = decoder(tokens)
    targets = []
    for p in counts:
        inst = torch.arange(p) % 4  # 3 instances + background
        targets.append(TokenTargets(inst, torch.ones(p), torch.tensor([0, 1, 2])))
    crit = InstanceCriterion(loss=name)
    loss = crit(out.layers, out.query_seed_token, targets, out.token_objectness)
    loss["loss"].backward()
    assert torch.isfinite(loss["loss"])
    assert all(p.grad is not None for p in decoder.parameters() if p.requires_grad and p.grad is not None)
    assert sum(int(p.grad is not None) for p in decoder.parameters()) > 5


@pytest.mark.parametrize("name", ["influencer", "hungarian"])
def test_real_decoder_under_bf16_autocast(name):
    """Mixed precision end to end: a bf16-autocast decoder, the criterion inside the autocast
    region (as a training loop runs it), finite loss and parameter gradients."""
    models = pytest.importorskip("pointformer.models.decoder")
    from pointformer.models.tokens import Tokens

    g = torch.Generator().manual_seed(1)
    tokens = Tokens(features=torch.randn(50, 8, generator=g) * 30, positions=torch.rand(50, 3, generator=g),
                    weights=torch.full((50,), 40.0), offsets=torch.tensor([0, 50]))
    decoder = models.QueryDecoder(token_dim=8, hidden_dim=16, num_heads=2, ffn_dim=32, num_layers=2, num_classes=3,
                                  num_queries=12, query_init="seeded" if name == "influencer" else "learned",
                                  mask_activation=mask_activation_for(name))
    targets = [TokenTargets(torch.arange(50) % 5, torch.full((50,), 40.0), torch.tensor([0, 1, 2, 0]))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = decoder(tokens)
        assert out.final.mask_logits[0].dtype == torch.bfloat16
        losses = InstanceCriterion(loss=name)(out.layers, out.query_seed_token, targets, out.token_objectness)
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    grads = [p.grad for p in decoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
