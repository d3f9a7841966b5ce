"""The whole 3D model on small procedural scenes (pointformer.data.toy) and its configs."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pointformer.data.toy import make_toy_scene
from pointformer.losses import query_setup
from pointformer.models.build import available_model_configs, build_model, load_model_config
from pointformer.models.segmentor import InstanceSegmentor3D, PointBatch, SegmentorOutput

torch.set_num_threads(1)


def build_for_loss(cfg, loss: str = "influencer") -> InstanceSegmentor3D:
    """The model of ``cfg`` with the mask activation and queries that ``loss`` declares."""
    setup = query_setup(loss)
    return build_model(cfg, mask_activation=setup.mask_activation, query_init=setup.query_init)


def scene_tensors(seed: int, num_points: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    scene = make_toy_scene(f"s{seed}", seed=seed, num_points=num_points, num_objects=3)
    xyz = torch.from_numpy(scene.xyz - scene.xyz.mean(0))
    colour = torch.from_numpy(scene.rgb.astype(np.float32) / 127.5 - 1.0)
    return xyz, colour, torch.from_numpy(scene.superpoint.astype(np.int64))


@pytest.fixture(scope="module")
def scenes() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [scene_tensors(1, 2500), scene_tensors(2, 1200)]


def tiny_model(seed: int = 0, **decoder_overrides) -> InstanceSegmentor3D:
    cfg = load_model_config("tiny")
    cfg.decoder.num_queries = 12
    cfg.decoder.eval_num_queries = 20
    for key, value in decoder_overrides.items():
        cfg.decoder[key] = value
    torch.manual_seed(seed)
    return build_for_loss(cfg)


def test_forward_backward_on_a_ragged_batch(scenes) -> None:
    model = tiny_model().train()
    batch = PointBatch.from_scenes(scenes)
    out = model(batch)
    assert isinstance(out, SegmentorOutput)
    token_counts = [int(s[2].max()) + 1 for s in scenes]
    assert out.tokens.counts.tolist() == token_counts
    assert len(out.layers) == model.decoder.num_layers + 1
    for b, t in enumerate(token_counts):
        n = min(12, t)
        assert out.final.class_logits[b].shape == (n, 18 + 1)
        assert out.final.mask_logits[b].shape == (n, t)
        assert out.final.background_logits[b].shape == (t,)
        assert out.query_seed_token[b].shape == (n,)
    loss = sum((t ** 2).mean() for layer in out.layers
               for t in layer.class_logits + layer.mask_logits + layer.background_logits)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing}"


def test_eval_mode_uses_a_different_query_count(scenes) -> None:
    model = tiny_model().eval()
    batch = PointBatch.from_scenes(scenes)
    with torch.no_grad():
        assert [q.numel() for q in model(batch).query_seed_token] == [20, 20]
        assert [q.numel() for q in model.train()(batch).query_seed_token] == [12, 12]
        assert [q.numel() for q in model.eval()(batch, num_queries=5).query_seed_token] == [5, 5]


def test_outputs_map_back_to_every_input_point(scenes) -> None:
    model = tiny_model().eval()
    batch = PointBatch.from_scenes(scenes)
    with torch.no_grad():
        out = model(batch)
    point_masks = out.point_mask_logits()
    for b, (xyz, _, sp) in enumerate(scenes):
        assert point_masks[b].shape == (out.final.mask_logits[b].shape[0], xyz.shape[0])
        torch.testing.assert_close(point_masks[b], out.final.mask_logits[b][:, sp])
    owners = [torch.cat([bg[None], m]).argmax(0) for bg, m in zip(out.final.background_logits, out.final.mask_logits)]
    for b, (xyz, _, sp) in enumerate(scenes):
        assert torch.equal(out.to_points(owners)[b], owners[b][sp])  # e.g. the owner of every point
    # voxel map: points in one voxel share a row; rows cover 0..V-1
    assert out.point_to_voxel.shape == (batch.num_points,)
    assert out.point_to_voxel.unique().numel() == out.num_voxels
    grid = torch.floor(batch.xyz / model.voxel_size).long()
    keys = batch.batch_index() * 10**9 + (grid[:, 0] + 1000) * 10**6 + (grid[:, 1] + 1000) * 10**3 + grid[:, 2] + 500
    assert keys.unique().numel() == out.num_voxels
    same = out.point_to_voxel[:, None] == out.point_to_voxel[None, :200]
    assert torch.equal(same, keys[:, None] == keys[None, :200])


def test_a_shift_by_the_translation_period_keeps_the_features(scenes) -> None:
    """Whole-period shifts leave voxels and strided groupings the same (what tiled prediction relies on);
    a shift by a fraction of the period regroups the voxels, and the features change."""
    model = tiny_model().eval()
    xyz, colour, superpoint = scenes[1]
    period = model.translation_period
    assert period == pytest.approx(model.voxel_size * 16)
    with torch.no_grad():
        features = {}
        for name, shift in (("origin", 0.0), ("periods", 3 * period), ("half voxel", 0.5 * model.voxel_size),
                            ("half period", 0.5 * period)):
            moved = (xyz.double() + shift).float()
            features[name] = model.point_features(PointBatch.from_scenes([(moved, colour, superpoint)]))[0]
    torch.testing.assert_close(features["periods"], features["origin"], atol=1e-5, rtol=1e-5)
    for name in ("half voxel", "half period"):
        assert (features[name] - features["origin"]).abs().max() > 1e-3, name


def test_batch_equals_each_scene_alone(scenes) -> None:
    model = tiny_model().eval()
    with torch.no_grad():
        batched = model(PointBatch.from_scenes(scenes))
        for b, scene in enumerate(scenes):
            alone = model(PointBatch.from_scenes([scene]))
            torch.testing.assert_close(batched.tokens.split()[b], alone.tokens.features, atol=1e-4, rtol=1e-4)
            assert batched.query_seed_token[b].tolist() == alone.query_seed_token[0].tolist()
            torch.testing.assert_close(batched.final.mask_logits[b], alone.final.mask_logits[0], atol=1e-3, rtol=1e-3)


def test_scene_batch_from_the_data_pipeline(tmp_path) -> None:
    from pointformer.data.collate import collate_scenes
    from pointformer.data.dataset import PreprocessedDataset
    from pointformer.data.toy import write_toy_split

    write_toy_split(tmp_path, "train", num_scenes=2, seed=3, num_points=1500)
    dataset = PreprocessedDataset(tmp_path, "train", features=("rgb", "normals"))
    batch = collate_scenes([dataset[0], dataset[1]])
    cfg = OmegaConf.create({"data": {"in_channels": 6, "num_classes": 18}, "model": load_model_config("tiny")})
    model = build_for_loss(cfg).eval()
    with torch.no_grad():
        out = model(batch)
    for b, target in enumerate(batch.targets):
        assert out.final.mask_logits[b].shape[1] == target.token_instance.shape[0]
        torch.testing.assert_close(out.tokens.split(out.tokens.weights)[b], target.token_weight)


def test_config_interpolates_data_and_the_loss_decides_the_decoder() -> None:
    cfg = OmegaConf.create({"data": {"num_classes": 5, "in_channels": 6}, "model": load_model_config("tiny")})
    with pytest.warns(UserWarning, match="eval_num_queries=80 is ignored"):  # learned queries cannot change count
        model = build_for_loss(cfg, "hungarian")  # a composed experiment config: the model node is used
    assert model.num_classes == 5 and model.backbone.in_channels == 6
    assert model.decoder.heads.class_head.out_features == 6
    assert (model.mask_activation, model.decoder.query_init) == ("sigmoid", "learned")  # the loss's
    alone = build_for_loss(load_model_config("tiny"))  # defaults without the data group
    assert alone.num_classes == 18 and alone.backbone.in_channels == 3
    assert (alone.mask_activation, alone.decoder.query_init) == ("ownership", "seeded")
    assert {"base", "tiny"} <= set(available_model_configs())


def test_a_whole_run_builds_the_model_its_loss_needs() -> None:
    from pointformer.build import build_model as build_run_model
    from pointformer.config import RunSettings, compose_config

    for loss, expected in (("influencer", ("ownership", "seeded")), ("hungarian", ("sigmoid", "learned"))):
        settings = RunSettings.from_config(compose_config([f"loss={loss}", "model=tiny", "data.num_classes=5"]))
        with warnings.catch_warnings():  # learned queries ignore the config's eval_num_queries (with a warning)
            warnings.simplefilter("ignore", UserWarning)
            model = build_run_model(settings)
        assert (model.mask_activation, model.decoder.query_init) == expected, loss
        assert model.num_classes == 5


def test_decoder_query_init_of_the_model_config_must_agree_or_be_null() -> None:
    cfg = load_model_config("tiny")
    assert cfg.decoder.query_init is None  # the loss decides
    cfg.decoder.query_init = "seeded"
    assert build_for_loss(cfg).decoder.query_init == "seeded"  # repeats the resolved value: fine
    with pytest.raises(ValueError, match="query_init='seeded' but the resolved query_init is 'learned'"):
        build_for_loss(cfg, "hungarian")
    with pytest.raises(TypeError):
        build_model(load_model_config("tiny"))  # mask_activation and query_init are the caller's to pass


def test_base_config_has_mask3d_sizes() -> None:
    cfg = load_model_config("base")
    model = build_for_loss(cfg)
    d = model.decoder
    assert (d.hidden_dim, d.num_layers, len(d.layers), d.num_queries, d.eval_num_queries) == (128, 12, 4, 100, 150)
    assert d.layers[0].ffn[0].out_features == 1024 and d.layers[0].cross_attn.num_heads == 8
    assert model.backbone.variant == "34C" and model.backbone.out_channels == 96 and model.voxel_size == 0.02


def test_config_errors_are_clear() -> None:
    cfg = OmegaConf.to_container(load_model_config("tiny"))
    with pytest.raises(ValueError, match="unknown key"):
        build_for_loss({**cfg, "decodr": {}})
    with pytest.raises(ValueError, match=r"decoder config: unknown key\(s\) \['heads'\]"):
        build_for_loss({**cfg, "decoder": {**cfg["decoder"], "heads": 3}})
    with pytest.raises(ValueError, match="variant"):
        build_for_loss({**cfg, "backbone": {"variant": "99Z"}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['mask_activation'\].*the mask activation is the loss's"):
        build_for_loss({**cfg, "decoder": {**cfg["decoder"], "mask_activation": "sigmoid"}})
    with pytest.raises(ValueError, match="mask_activation"):
        build_model(cfg, mask_activation="softmax", query_init="seeded")
    with pytest.raises(ValueError, match="unknown model config"):
        load_model_config("huge")


def test_point_batch_validation() -> None:
    xyz, colour, sp = scene_tensors(4, 300)
    n = xyz.shape[0]
    with pytest.raises(ValueError, match="outside its scene's range"):
        PointBatch(xyz=xyz, features=colour, point_offsets=torch.tensor([0, n]), superpoint=sp + 1000,
                   token_offsets=torch.tensor([0, int(sp.max()) + 1]))
    with pytest.raises(ValueError, match="features"):
        PointBatch(xyz=xyz, features=colour[:10], point_offsets=torch.tensor([0, n]), superpoint=sp,
                   token_offsets=torch.tensor([0, int(sp.max()) + 1]))
    with pytest.raises(ValueError, match="point_offsets ends"):
        PointBatch(xyz=xyz, features=colour, point_offsets=torch.tensor([0, n - 100]), superpoint=sp,
                   token_offsets=torch.tensor([0, int(sp.max()) + 1]))
    bad = xyz.clone()
    bad[5, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        PointBatch.from_scenes([(bad, colour, sp)])
    with pytest.raises(ValueError, match="lacks the field"):
        tiny_model()(object())


def test_base_model_forward_backward(scenes) -> None:
    torch.manual_seed(0)
    model = build_for_loss(load_model_config("base")).train()
    out = model(PointBatch.from_scenes(scenes))
    assert len(out.layers) == 13
    sum(t.float().pow(2).mean() for t in out.final.mask_logits + out.final.class_logits).backward()
    assert all(p.grad is not None for p in model.backbone.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(scenes) -> None:
    model = tiny_model().eval()
    batch = PointBatch.from_scenes(scenes)
    with torch.no_grad():
        ref = model(batch)
        out = model.to("cuda")(batch.to("cuda"))
    for b in range(2):
        assert ref.query_seed_token[b].tolist() == out.query_seed_token[b].cpu().tolist()
        torch.testing.assert_close(out.final.mask_logits[b].cpu(), ref.final.mask_logits[b], atol=2e-3, rtol=2e-3)


@pytest.mark.minkowski
def test_minkowski_backend_matches_torch(scenes) -> None:
    from pointformer.sparse.backends import minkowski_available

    if not minkowski_available():
        pytest.skip("MinkowskiEngine is not installed (make minkowski)")
    model = tiny_model().eval()
    cfg = load_model_config("tiny")
    cfg.decoder.num_queries, cfg.decoder.eval_num_queries = 12, 20
    cfg.backbone.backend = "minkowski"
    me_model = build_for_loss(cfg).eval()
    me_model.load_state_dict(model.state_dict())
    batch = PointBatch.from_scenes(scenes)
    with torch.no_grad():
        ref, out = model(batch), me_model(batch)
    for b in range(2):
        torch.testing.assert_close(out.final.mask_logits[b], ref.final.mask_logits[b], atol=1e-3, rtol=1e-3)
