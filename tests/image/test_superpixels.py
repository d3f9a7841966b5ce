"""Superpixels: the segmentator's union-find on the 8-connected pixel grid."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pointformer.image.superpixels import SuperpixelSettings, grid_edges, image_superpixels
from pointformer.preprocess.segmentator import segment_sorted_edges, stable_argsort_nonnegative


def _blocks(noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 40x48 image of 4 flat colour blocks (optionally noisy) and the block label of each pixel."""
    labels = np.zeros((40, 48), dtype=np.int64)
    labels[:, 20:] = 1
    labels[25:, :] = 2
    labels[25:, 30:] = 3
    colours = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9], [0.9, 0.9, 0.2]], dtype=np.float32)
    image = colours[labels] + np.random.default_rng(seed).normal(0, noise, (40, 48, 3)).astype(np.float32)
    return np.clip(image, 0, 1).astype(np.float32), labels


def test_flat_blocks_are_recovered_exactly() -> None:
    image, labels = _blocks()
    ids = image_superpixels(image, settings=SuperpixelSettings(threshold=0.1, min_size=4, sigma=0.0))
    assert ids.shape == labels.shape and ids.dtype == np.int64
    assert ids.max() + 1 == 4
    # one superpixel per block, numbered in raster order of first pixel
    np.testing.assert_array_equal(ids, np.array([0, 1, 2, 3])[labels])


def test_noisy_blocks_do_not_cross_block_edges() -> None:
    image, labels = _blocks(noise=0.05, seed=1)
    settings = SuperpixelSettings(threshold=0.5, min_size=16, sigma=0.5)
    ids = image_superpixels(image, settings=settings)
    purity = sum(np.bincount(labels[ids == s]).max() for s in range(ids.max() + 1)) / ids.size
    assert purity > 0.99
    sizes = np.bincount(ids.ravel())
    assert sizes.min() >= settings.min_size
    # contiguous ids; every superpixel is one 8-connected region
    assert set(np.unique(ids)) == set(range(ids.max() + 1))
    for s in range(ids.max() + 1):
        _, components = ndimage.label(ids == s, structure=np.ones((3, 3)))
        assert components == 1


def test_threshold_controls_the_count_and_output_is_deterministic() -> None:
    image = np.random.default_rng(3).random((32, 32, 3)).astype(np.float32)
    counts = [int(image_superpixels(image, settings=SuperpixelSettings(threshold=t, min_size=4)).max()) + 1
              for t in (0.1, 1.0, 10.0)]
    assert counts[0] > counts[1] > counts[2]
    settings = SuperpixelSettings()
    np.testing.assert_array_equal(image_superpixels(image, settings=settings),
                                  image_superpixels(image, settings=settings))


def test_uint8_equals_float_and_grey_is_accepted() -> None:
    image, _ = _blocks(noise=0.05, seed=2)
    as_uint8 = np.round(image * 255).astype(np.uint8)
    settings = SuperpixelSettings(threshold=0.3, min_size=8, sigma=0.0)
    np.testing.assert_array_equal(image_superpixels(as_uint8, settings=settings),
                                  image_superpixels(as_uint8.astype(np.float32) / 255, settings=settings))
    grey = image_superpixels(as_uint8[:, :, 0], settings=settings)
    assert grey.shape == (40, 48)


def test_compiled_graph_and_union_find_equal_an_independent_numpy_graph() -> None:
    """The 8-neighbour graph written again with numpy, segmented by the segmentator's union-find in
    plain Python: the same partition as the compiled path."""
    rng = np.random.default_rng(5)
    image = rng.random((12, 15, 3)).astype(np.float32)
    h, w = image.shape[:2]
    index = np.arange(h * w).reshape(h, w)
    pairs = [(index[:, :-1], index[:, 1:]), (index[:-1, :], index[1:, :]), (index[:-1, :-1], index[1:, 1:]),
             (index[:-1, 1:], index[1:, :-1])]
    ea = np.concatenate([a.ravel() for a, _ in pairs])
    eb = np.concatenate([b.ravel() for _, b in pairs])
    flat = image.reshape(-1, 3)
    weights = np.sqrt(((flat[ea] - flat[eb]) ** 2).sum(1)).astype(np.float32)
    ca, cb, cw = grid_edges(image)
    assert len(ca) == len(ea)
    as_set = {(int(a), int(b)): float(x) for a, b, x in zip(ca, cb, cw)}
    assert set(as_set) == set(zip(ea.tolist(), eb.tolist()))
    assert np.allclose([as_set[(int(a), int(b))] for a, b in zip(ea, eb)], weights, atol=1e-6)

    settings = SuperpixelSettings(threshold=0.8, min_size=5, sigma=0.0)
    order = stable_argsort_nonnegative(weights)
    roots = segment_sorted_edges(h * w, ea[order].tolist(), eb[order].tolist(), weights[order].tolist(),
                                 float(np.float32(settings.threshold)), settings.min_size)
    reference = np.unique(np.asarray(roots), return_inverse=True)[1].reshape(h, w)
    ours = image_superpixels(image, settings=settings)
    # the same partition (ids may differ): a bijection between the two labelings
    pairs_seen = set(zip(ours.ravel().tolist(), reference.ravel().tolist()))
    assert len(pairs_seen) == ours.max() + 1 == reference.max() + 1


def test_tiny_images_and_bad_inputs() -> None:
    assert image_superpixels(np.zeros((1, 1, 3), np.float32), settings=SuperpixelSettings()).tolist() == [[0]]
    assert image_superpixels(np.zeros((3, 1, 3), np.uint8), settings=SuperpixelSettings()).max() == 0
    with pytest.raises(ValueError, match="dtype"):
        image_superpixels(np.zeros((4, 4, 3), np.int32), settings=SuperpixelSettings())
    with pytest.raises(ValueError, match="NaN"):
        image_superpixels(np.full((4, 4, 3), np.nan, np.float32), settings=SuperpixelSettings())
    with pytest.raises(ValueError, match="shape"):
        image_superpixels(np.zeros((0, 4, 3), np.float32), settings=SuperpixelSettings())
    with pytest.raises(ValueError, match="min_size"):
        SuperpixelSettings(min_size=0)
    with pytest.raises(ValueError, match="threshold"):
        SuperpixelSettings(threshold=float("nan"))
