"""Image tokens for the shared ``QueryDecoder``, and their per-token targets.

Two kinds of token, both described by a *token map*: long [h, w], the scene-local token of every
pixel of an image's valid (unpadded) region.

* ``pixel``: one token per cell of the pixel decoder's output grid (``stride`` x ``stride`` input
  pixels); its features are that cell's feature vector.
* ``superpixel``: one token per superpixel (``pointformer.image.superpixels``); its features are the
  pixel-decoder features, upsampled to the input resolution, averaged over the superpixel's pixels,
  each pixel counting once: the 2D counterpart of superpoint pooling, and the same code
  (``pointformer.models.tokens.superpoint_tokens``).

Positions are pixel coordinates (x, y) of the resized image, averaged over the token's pixels
(``pos_dim=2``; the decoder normalises them per image for its Fourier encoding and runs FPS on them
raw). Weights are the token's pixel counts, as superpoints weigh by their points.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from pointformer.losses.targets import TokenTargets
from pointformer.models.tokens import Tokens, offsets_from_counts, pool_superpoints, superpoint_tokens

__all__ = ["TOKEN_KINDS", "pixel_token_map", "pixel_coordinates", "pixel_tokens", "superpixel_tokens",
           "instance_map", "token_targets"]

TOKEN_KINDS = ("pixel", "superpixel")


def pixel_token_map(height: int, width: int, stride: int, device: torch.device | str = "cpu") -> Tensor:
    """long [height, width]: the grid cell (row-major over ceil(h/stride) x ceil(w/stride) cells) of every pixel."""
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    cells_x = -(-width // stride)
    ys = torch.arange(height, device=device) // stride
    xs = torch.arange(width, device=device) // stride
    return ys[:, None] * cells_x + xs[None, :]


def pixel_coordinates(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """float [height * width, 2]: (x, y) pixel-centre coordinates, row-major."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32) + 0.5,
                            torch.arange(width, device=device, dtype=torch.float32) + 0.5, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


def _check_sizes(feature_map: Tensor, valid_sizes: Sequence[tuple[int, int]], stride: int) -> None:
    if feature_map.dim() != 4 or feature_map.shape[0] != len(valid_sizes):
        raise ValueError(f"feature map must be [B={len(valid_sizes)}, D, h, w], got {tuple(feature_map.shape)}")
    for b, (h, w) in enumerate(valid_sizes):
        if h < 1 or w < 1 or -(-h // stride) > feature_map.shape[2] or -(-w // stride) > feature_map.shape[3]:
            raise ValueError(f"image {b}: valid size {h}x{w} does not fit a feature map of "
                             f"{feature_map.shape[2]}x{feature_map.shape[3]} at stride {stride}")


def pixel_tokens(feature_map: Tensor, valid_sizes: Sequence[tuple[int, int]],
                 stride: int) -> tuple[Tokens, list[Tensor]]:
    """One token per feature-map cell inside each image's valid region.

    Args:
        feature_map: float [B, D, H / stride, W / stride] (the padded batch).
        valid_sizes: B (h, w) valid sizes in input pixels (the image occupies the top-left corner).
        stride: input pixels per feature cell.
    Returns:
        ``Tokens`` (features [T, D], positions [T, 2] mean (x, y) of the cell's valid pixels, weights
        [T] valid pixels per cell) and B token maps long [h, w].
    """
    _check_sizes(feature_map, valid_sizes, stride)
    features, positions, weights, maps, counts = [], [], [], [], []
    for b, (h, w) in enumerate(valid_sizes):
        cells_y, cells_x = -(-h // stride), -(-w // stride)
        token_map = pixel_token_map(h, w, stride, feature_map.device)
        count = cells_y * cells_x
        features.append(feature_map[b, :, :cells_y, :cells_x].reshape(feature_map.shape[1], count).t())
        positions.append(pool_superpoints(pixel_coordinates(h, w, feature_map.device), token_map.reshape(-1), count))
        weights.append(torch.bincount(token_map.reshape(-1), minlength=count).float())
        maps.append(token_map)
        counts.append(count)
    tokens = Tokens(features=torch.cat(features), positions=torch.cat(positions), weights=torch.cat(weights),
                    offsets=offsets_from_counts(torch.tensor(counts)).to(feature_map.device))
    return tokens, maps


def superpixel_tokens(feature_map: Tensor, valid_sizes: Sequence[tuple[int, int]], stride: int,
                      superpixels: Sequence[Tensor]) -> tuple[Tokens, list[Tensor]]:
    """One token per superpixel: pixel-decoder features averaged over its pixels.

    Args:
        feature_map: float [B, D, H / stride, W / stride]; upsampled bilinearly to [B, D, H, W].
        valid_sizes: B (h, w).
        stride: of ``feature_map``.
        superpixels: B long [h, w] contiguous superpixel ids 0..S_b-1 of every valid pixel.
    Returns:
        ``Tokens`` (positions = superpixel centroids (x, y), weights = pixel counts) and the B token maps
        (= ``superpixels``).
    """
    _check_sizes(feature_map, valid_sizes, stride)
    if len(superpixels) != len(valid_sizes):
        raise ValueError(f"{len(superpixels)} superpixel maps for {len(valid_sizes)} images")
    full = F.interpolate(feature_map, scale_factor=stride, mode="bilinear", align_corners=False)
    point_features, point_positions, point_token, counts = [], [], [], []
    offset = 0
    for b, ((h, w), ids) in enumerate(zip(valid_sizes, superpixels)):
        if tuple(ids.shape) != (h, w) or ids.dtype.is_floating_point:
            raise ValueError(f"image {b}: superpixels must be integer [{h}, {w}], got {ids.dtype} {tuple(ids.shape)}")
        ids = ids.to(feature_map.device).long().reshape(-1)
        count = int(ids.max()) + 1
        if int(ids.min()) < 0:
            raise ValueError(f"image {b}: superpixel ids must be >= 0")
        point_features.append(full[b, :, :h, :w].reshape(full.shape[1], h * w).t())
        point_positions.append(pixel_coordinates(h, w, feature_map.device))
        point_token.append(ids + offset)
        counts.append(count)
        offset += count
    tokens = superpoint_tokens(torch.cat(point_features), torch.cat(point_positions), torch.cat(point_token),
                               offsets_from_counts(torch.tensor(counts)).to(feature_map.device))
    return tokens, [s.to(feature_map.device).long() for s in superpixels]


def instance_map(masks: Tensor) -> Tensor:
    """bool [K, h, w] instance masks -> long [h, w]: 0 background, k + 1 for instance k. Where masks
    overlap the smaller instance wins (it would otherwise vanish under the larger one)."""
    if masks.dim() != 3:
        raise ValueError(f"masks must be bool [K, h, w], got {tuple(masks.shape)}")
    result = torch.zeros(masks.shape[1:], dtype=torch.long, device=masks.device)
    areas = masks.flatten(1).sum(1)
    for k in torch.argsort(areas, descending=True, stable=True).tolist():  # the smallest is painted last
        result[masks[k]] = k + 1
    return result


def token_targets(token_map: Tensor, num_tokens: int, masks: Tensor, classes: Tensor,
                  ignore: Optional[Tensor] = None) -> TokenTargets:
    """Per-token targets of one image for ``InstanceCriterion``.

    A token's instance is the majority over its non-ignored pixels (background counts as a candidate);
    its weight is the number of those pixels. A token whose pixels are all ignored (crowd) gets
    instance -1 and weight 0: it is out of every loss term.

    Args:
        token_map: long [h, w] scene-local token of every pixel (0..num_tokens-1).
        num_tokens: T.
        masks: bool [K, h, w]; classes: long [K] 0-based classes.
        ignore: bool [h, w] pixels excluded from the loss (crowd regions), or None.
    Returns:
        ``TokenTargets`` (token_instance long [T], token_weight float [T], instance_class long [K]).
    """
    h, w = token_map.shape
    if masks.shape[1:] != (h, w) or masks.shape[0] != classes.shape[0]:
        raise ValueError(f"masks {tuple(masks.shape)} and classes {tuple(classes.shape)} do not fit a "
                         f"token map of {h}x{w}")
    device = token_map.device
    k = int(masks.shape[0])
    pixel_instance = instance_map(masks.to(device).bool()).reshape(-1)
    tokens = token_map.reshape(-1).long()
    keep = torch.ones_like(tokens, dtype=torch.bool) if ignore is None else ~ignore.to(device).bool().reshape(-1)
    votes = torch.bincount(tokens[keep] * (k + 1) + pixel_instance[keep],
                           minlength=num_tokens * (k + 1)).reshape(num_tokens, k + 1)
    weight = votes.sum(1)
    instance = votes.argmax(1)
    instance = torch.where(weight > 0, instance, torch.full_like(instance, -1))
    return TokenTargets(token_instance=instance, token_weight=weight.float(),
                        instance_class=classes.to(device).long())
