import math

import numpy as np
import pytest

from pointformer.data.transforms import (CenterScene, ColorJitter, ElasticDistortion, NormalizeColor, PointSample,
                                         RandomFlip, RandomRotation, RandomScale, build_transforms)


def _sample(n=500, seed=0):
    rng = np.random.default_rng(seed)
    xyz = (rng.random((n, 3)) * [3, 2, 1] + [5, 5, 0]).astype(np.float32)
    normals = rng.normal(size=(n, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    normals[:10] = 0  # undefined normals must stay zero
    return PointSample(xyz=xyz, rgb=rng.integers(0, 256, (n, 3)).astype(np.float32), normals=normals)


def test_center_moves_mean_to_origin():
    s = CenterScene()(_sample(), np.random.default_rng(0))
    assert np.abs(s.xyz.mean(0)).max() < 1e-5


def test_center_on_a_grid_moves_by_a_multiple_of_the_grid():
    original = _sample()
    moved = CenterScene(grid=0.64)(_sample(), np.random.default_rng(0))
    shift = (original.xyz.astype(np.float64) - moved.xyz).mean(0)  # the same shift for every point
    np.testing.assert_allclose(shift / 0.64, np.round(shift / 0.64), atol=1e-4)
    assert np.abs(moved.xyz.mean(0)).max() <= 0.32 + 1e-5  # within half a grid step of the mean
    assert np.abs(shift / 0.64).max() >= 1  # the sample sits at x, y ~ 6 m: it moved
    with pytest.raises(ValueError, match="grid must be positive"):
        CenterScene(grid=0.0)


def test_rotation_preserves_distances_and_keeps_normals_unit():
    s0 = _sample()
    s = RandomRotation(tilt=math.pi / 24)(_sample(), np.random.default_rng(3))
    d0 = np.linalg.norm(s0.xyz[1:] - s0.xyz[:-1], axis=1)
    d1 = np.linalg.norm(s.xyz[1:] - s.xyz[:-1], axis=1)
    assert np.allclose(d0, d1, atol=1e-4)
    assert not np.allclose(s0.xyz, s.xyz)
    lengths = np.linalg.norm(s.normals, axis=1)
    assert np.allclose(lengths[10:], 1, atol=1e-5) and (lengths[:10] == 0).all()
    # tilt bounded: the z axis moves by at most ~sqrt(2) * pi/24
    up = np.array([0, 0, 1.0])
    rotated = RandomRotation(tilt=math.pi / 24)(PointSample(up[None].astype(np.float32), np.zeros((1, 3), np.float32),
                                                            up[None].astype(np.float32)), np.random.default_rng(5))
    assert math.acos(float(rotated.xyz[0, 2])) <= math.sqrt(2) * math.pi / 24 + 1e-6


def test_flip_negates_axes_and_normals():
    rng = np.random.default_rng(0)
    s0 = _sample()
    s = RandomFlip(axes=(0,), p=1.0)(_sample(), rng)
    assert np.allclose(s.xyz[:, 0], -s0.xyz[:, 0]) and np.allclose(s.xyz[:, 1:], s0.xyz[:, 1:])
    assert np.allclose(s.normals[10:, 0], -s0.normals[10:, 0])


def test_scale_within_bounds_and_normals_follow_inverse_transpose():
    s0 = _sample()
    s = RandomScale(low=0.9, high=1.1)(_sample(), np.random.default_rng(1))
    ratio = s.xyz / s0.xyz
    assert (ratio > 0.9 - 1e-6).all() and (ratio < 1.1 + 1e-6).all()
    # a plane's normal stays perpendicular to vectors in the plane after anisotropic scaling
    n = np.array([[1.0, 1.0, 0.0]]) / math.sqrt(2)
    tangent = np.array([[1.0, -1.0, 0.0]])
    p = PointSample(tangent.astype(np.float32), np.zeros((1, 3), np.float32), n.astype(np.float32))
    p = RandomScale(low=0.5, high=2.0)(p, np.random.default_rng(7))
    assert abs(float((p.xyz * p.normals).sum())) < 1e-5


def test_elastic_distortion_is_smooth_and_bounded():
    s0 = _sample(2000)
    s = ElasticDistortion(params=((0.2, 0.4),), p=1.0)(_sample(2000), np.random.default_rng(0))
    disp = s.xyz - s0.xyz
    assert np.abs(disp).max() < 0.4 and np.abs(disp).max() > 1e-3
    # nearby points move alike (smooth field)
    d = np.linalg.norm(s0.xyz[:, None] - s0.xyz[None, :200], axis=2)
    i, j = np.nonzero((d < 0.02) & (d > 0))
    assert np.abs(disp[i] - disp[j]).max() < 0.05
    same = ElasticDistortion(p=0.0)(_sample(2000), np.random.default_rng(0))
    assert np.array_equal(same.xyz, s0.xyz)


def test_color_jitter_and_normalisation():
    s = ColorJitter(p=1.0)(_sample(), np.random.default_rng(0))
    assert s.rgb.min() >= 0 and s.rgb.max() <= 255
    n = NormalizeColor(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(PointSample(
        np.zeros((1, 3), np.float32), np.array([[255, 127.5, 0]], np.float32), np.zeros((1, 3), np.float32)), None)
    assert np.allclose(n.rgb, [[2, 0, -2]])
    with pytest.raises(ValueError, match="std > 0"):
        NormalizeColor(mean=(0, 0, 0), std=(1, 0, 1))


def test_pipeline_is_a_function_of_the_generator_seed():
    pipe = build_transforms(train=True)
    a = pipe(_sample(), np.random.default_rng(42))
    b = pipe(_sample(), np.random.default_rng(42))
    c = pipe(_sample(), np.random.default_rng(43))
    assert np.array_equal(a.xyz, b.xyz) and np.array_equal(a.rgb, b.rgb)
    assert not np.allclose(a.xyz, c.xyz)
    val = build_transforms(train=False)
    assert [type(t).__name__ for t in val.transforms] == ["CenterScene", "NormalizeColor"]


def test_build_transforms_rejects_unknown_and_bad_options():
    with pytest.raises(ValueError, match="unknown augmentation"):
        build_transforms(train=True, augment={"shear": {}})
    with pytest.raises(ValueError, match="data.augment.scale"):
        build_transforms(train=True, augment={"scale": {"factor": 2}})
    off = build_transforms(train=True, augment={"elastic": None, "color_jitter": False})
    assert "ElasticDistortion" not in repr(off) and "ColorJitter" not in repr(off)
