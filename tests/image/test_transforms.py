"""Image + mask transforms: masks follow the image through resize, flip and crop; seeded randomness."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pointformer.image.transforms import (AnnotatedImage, check_augmentation, crop, drop_empty, eval_transform, hflip,
                                          random_crop, resize, scaled_size, train_transform)


def _item(height: int = 40, width: int = 60) -> AnnotatedImage:
    """An image whose red channel is 1 exactly on mask 0 and green exactly on mask 1 (so masks can be
    checked against the transformed image), blue = the ignore region."""
    masks = torch.zeros((2, height, width), dtype=torch.bool)
    masks[0, 5:20, 4:24] = True
    masks[1, 22:36, 30:55] = True
    ignore = torch.zeros((height, width), dtype=torch.bool)
    ignore[0:4, :] = True
    image = torch.stack([masks[0].float(), masks[1].float(), ignore.float()])
    return AnnotatedImage(image=image, masks=masks, ignore=ignore)


def _consistent(item: AnnotatedImage) -> None:
    """Masks still sit where their colour is in the image (up to the resize's boundary pixels)."""
    for channel, mask in ((0, item.masks[0]), (1, item.masks[1]), (2, item.ignore)):
        colour = item.image[channel] >= 0.5
        disagree = (colour != mask).float().mean().item()
        assert disagree < 0.02, (channel, disagree)


def test_scaled_size_keeps_aspect_and_longer_side() -> None:
    assert scaled_size((40, 60), 30) == (20, 30)
    assert scaled_size((60, 40), 90) == (90, 60)
    assert scaled_size((1, 1000), 10) == (1, 10)  # never below one pixel


def test_resize_moves_masks_with_the_image() -> None:
    out = resize(_item(), (20, 30))
    assert out.image.shape == (3, 20, 30) and out.masks.shape == (2, 20, 30) and out.ignore.shape == (20, 30)
    assert out.masks.dtype == torch.bool and out.ignore.dtype == torch.bool
    _consistent(out)
    # a 2x downscale of a rectangle with even borders is exact
    np.testing.assert_array_equal(out.ignore.numpy(), np.arange(20)[:, None].repeat(30, 1) < 2)
    up = resize(_item(), (80, 120))
    _consistent(up)
    assert int(up.masks[0].sum()) == 4 * int(_item().masks[0].sum())


def test_resize_without_instances() -> None:
    item = _item()
    empty = AnnotatedImage(image=item.image, masks=item.masks[:0], ignore=item.ignore)
    out = resize(empty, (10, 15))
    assert out.masks.shape == (0, 10, 15)
    with pytest.raises(ValueError, match="at least 1x1"):
        resize(empty, (0, 15))


def test_hflip_and_crop() -> None:
    item = _item()
    flipped = hflip(item)
    _consistent(flipped)
    assert torch.equal(flipped.masks[0], item.masks[0].flip(-1))
    assert torch.equal(hflip(flipped).image, item.image)
    window = crop(item, 3, 10, 20, 25)
    assert window.image.shape == (3, 20, 25)
    assert torch.equal(window.masks, item.masks[:, 3:23, 10:35])
    assert torch.equal(window.ignore, item.ignore[3:23, 10:35])
    with pytest.raises(ValueError, match="does not fit a 40x60 image"):
        crop(item, 30, 0, 20, 10)


def test_random_crop_is_seeded_and_clipped() -> None:
    item = _item()
    a = random_crop(item, 32, np.random.default_rng(4))
    b = random_crop(item, 32, np.random.default_rng(4))
    assert a.image.shape == (3, 32, 32) and torch.equal(a.image, b.image)
    big = random_crop(item, 100, np.random.default_rng(0))  # larger than the image: the whole image
    assert torch.equal(big.image, item.image)
    windows = {tuple(random_crop(item, 32, np.random.default_rng(s)).image.sum((0, 1)).tolist()) for s in range(8)}
    assert len(windows) > 1


def test_drop_empty_removes_cropped_away_instances() -> None:
    item = crop(_item(), 0, 0, 20, 25)  # mask 1 lies outside this window
    kept, classes = drop_empty(item, torch.tensor([3, 5]))
    assert kept.masks.shape[0] == 1 and classes.tolist() == [3]


def test_train_transform_is_a_function_of_the_generator() -> None:
    item = _item()
    kwargs = dict(image_size=48, scale_jitter=(0.5, 1.5), crop_size=32, flip=True)
    a = train_transform(item, rng=np.random.default_rng(7), **kwargs)
    b = train_transform(item, rng=np.random.default_rng(7), **kwargs)
    assert torch.equal(a.image, b.image) and torch.equal(a.masks, b.masks)
    _consistent(a)
    sizes = set()
    for seed in range(20):
        out = train_transform(item, rng=np.random.default_rng(seed), image_size=48, scale_jitter=(0.5, 1.5),
                              crop_size=None, flip=True)
        _consistent(out)
        sizes.add(max(out.size))
        assert 24 <= max(out.size) <= 72
    assert len(sizes) > 5  # the scale is drawn, not fixed


def test_flip_happens_about_half_the_time_and_does_not_shift_other_draws() -> None:
    item = _item()
    flips = 0
    for seed in range(40):
        on = train_transform(item, rng=np.random.default_rng(seed), image_size=60, scale_jitter=(0.8, 1.2),
                             crop_size=None, flip=True)
        off = train_transform(item, rng=np.random.default_rng(seed), image_size=60, scale_jitter=(0.8, 1.2),
                              crop_size=None, flip=False)
        assert on.size == off.size  # the same scale whether or not flipping is enabled
        if not torch.equal(on.image, off.image):
            assert torch.equal(on.image, off.image.flip(-1))
            flips += 1
    assert 10 <= flips <= 30


def test_eval_transform_resizes_only() -> None:
    out = eval_transform(_item(), image_size=30)
    assert out.size == (20, 30)
    _consistent(out)


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=0, scale_jitter=None, crop_size=None), "image_size"),
    (dict(image_size=32, scale_jitter=(1.5, 0.5), crop_size=None), "scale_jitter"),
    (dict(image_size=32, scale_jitter=(0.0, 1.0), crop_size=None), "scale_jitter"),
    (dict(image_size=32, scale_jitter=None, crop_size=0), "crop_size"),
])
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_augmentation(**kwargs)


def test_many_instances_resize_like_one_at_a_time() -> None:
    """Masks are resized in chunks (memory); the result is the same as one by one."""
    rng = np.random.default_rng(1)
    masks = torch.from_numpy(rng.random((70, 30, 40)) < 0.3)
    item = AnnotatedImage(image=torch.rand(3, 30, 40), masks=masks, ignore=torch.zeros(30, 40, dtype=torch.bool))
    out = resize(item, (17, 23))
    assert out.masks.shape == (70, 17, 23)
    for k in (0, 31, 32, 69):
        single = resize(AnnotatedImage(image=item.image, masks=masks[k:k + 1], ignore=item.ignore), (17, 23))
        assert torch.equal(out.masks[k], single.masks[0])
