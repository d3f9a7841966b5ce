"""The 2D instance segmentation model: ResNet -> pixel decoder -> image tokens -> the shared QueryDecoder.

Data flow for B images (RGB in [0, 1], padded to [B, 3, H, W], image b valid in its top-left h_b x w_b):

    images --normalise, zero the padding, pad to a multiple of the backbone's last stride-->
      --ResNet2D--> maps at strides 2, 4, 8, 16 --PixelDecoder--> features [B, D, H/s, W/s]
      --pixel or superpixel tokens--> Tokens (features [T, D], positions (x, y) [T, 2], weights = pixels)
      --QueryDecoder (pointformer.models.decoder)--> per stage class [N_b, C+1], mask [N_b, T_b] logits

Masks come out per token; ``ImageSegmentorOutput.token_maps`` maps every valid pixel to its token.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointformer.image.backbone import ResNet2D
from pointformer.image.pixel_decoder import PixelDecoder
from pointformer.image.tokens import TOKEN_KINDS, pixel_tokens, superpixel_tokens
from pointformer.models.decoder import DecoderOutput, LayerPrediction, QueryDecoder
from pointformer.models.tokens import Tokens

__all__ = ["ImageSegmentorOutput", "InstanceSegmentor2D"]


@dataclass
class ImageSegmentorOutput:
    """Predictions of the 2D model.

    Attributes:
        layers: per decoder stage per image: class_logits [N_b, C+1], mask_logits [N_b, T_b],
            background_logits [T_b] or None (sigmoid activation).
        query_seed_token: B tensors long [N_b], the scene-local seed token of each query (-1 learned).
        token_objectness: B tensors [T_b] or None.
        tokens: the image tokens.
        token_maps: B tensors long [h_b, w_b], the scene-local token of every valid pixel.
    """

    layers: list[LayerPrediction]
    query_seed_token: list[Tensor]
    token_objectness: Optional[list[Tensor]]
    tokens: Tokens
    token_maps: list[Tensor]

    @property
    def final(self) -> LayerPrediction:
        return self.layers[-1]

    def pixel_values(self, per_token: Sequence[Tensor]) -> list[Tensor]:
        """Broadcast per-token values to pixels: B tensors [..., T_b] -> B tensors [..., h_b, w_b]."""
        if len(per_token) != len(self.token_maps):
            raise ValueError(f"pixel_values: got {len(per_token)} images, the output has {len(self.token_maps)}")
        return [values[..., index] for values, index in zip(per_token, self.token_maps)]


class InstanceSegmentor2D(nn.Module):
    """Backbone -> pixel decoder -> tokens -> query decoder.

    Args:
        backbone: ``ResNet2D``.
        pixel_decoder: ``PixelDecoder`` over the backbone's stages; its ``dim`` is the decoder's token_dim.
        decoder: the shared ``QueryDecoder`` with ``pos_dim=2``.
        tokens: "pixel" or "superpixel".
        pixel_mean, pixel_std: RGB normalisation of [0, 1] images.
    """

    def __init__(self, *, backbone: ResNet2D, pixel_decoder: PixelDecoder, decoder: QueryDecoder,
                 tokens: str = "pixel", pixel_mean: Sequence[float] = (0.485, 0.456, 0.406),
                 pixel_std: Sequence[float] = (0.229, 0.224, 0.225)) -> None:
        super().__init__()
        if tokens not in TOKEN_KINDS:
            raise ValueError(f"tokens must be one of {TOKEN_KINDS}, got {tokens!r}")
        if decoder.pos_dim != 2:
            raise ValueError(f"the image model needs a decoder with pos_dim=2, got {decoder.pos_dim}")
        if decoder.token_dim != pixel_decoder.dim:
            raise ValueError(f"pixel decoder dim {pixel_decoder.dim} differs from decoder token_dim "
                             f"{decoder.token_dim}")
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
            raise ValueError(f"pixel_mean / pixel_std must be 3 values (std > 0), got {pixel_mean}, {pixel_std}")
        self.backbone = backbone
        self.pixel_decoder = pixel_decoder
        self.decoder = decoder
        self.token_kind = tokens
        self.stride = pixel_decoder.output_stride
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1), False)

    @property
    def num_classes(self) -> int:
        return self.decoder.num_classes

    @property
    def mask_activation(self) -> str:
        return self.decoder.mask_activation

    def pixel_features(self, images: Tensor, valid_sizes: Sequence[tuple[int, int]]) -> Tensor:
        """images float [B, 3, H, W] in [0, 1] -> pixel-decoder features [B, D, ceil(H'/s), ceil(W'/s)],
        H' and W' rounded up to a multiple of the backbone's last stride."""
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] != len(valid_sizes):
            raise ValueError(f"images must be [B={len(valid_sizes)}, 3, H, W], got {tuple(images.shape)}")
        x = (images.float() - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        rows = torch.arange(h, device=x.device)[None, :, None]
        cols = torch.arange(w, device=x.device)[None, None, :]
        sizes = torch.as_tensor(list(valid_sizes), device=x.device)
        valid = (rows < sizes[:, 0, None, None]) & (cols < sizes[:, 1, None, None])  # [B, H, W]
        x = x * valid[:, None].to(x.dtype)  # the padding is 0 after normalisation: the mean colour
        multiple = self.backbone.strides[-1]
        x = F.pad(x, (0, -w % multiple, 0, -h % multiple))
        return self.pixel_decoder(self.backbone(x))

    def forward(self, images: Tensor, valid_sizes: Sequence[tuple[int, int]],
                superpixels: Optional[Sequence[Tensor]] = None, *, num_queries: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> ImageSegmentorOutput:
        """
        Args:
            images: float [B, 3, H, W] RGB in [0, 1]; image b occupies [:h_b, :w_b].
            valid_sizes: B (h_b, w_b).
            superpixels: B long [h_b, w_b] superpixel ids (required for superpixel tokens).
            num_queries, generator: see ``QueryDecoder.forward``.
        """
        valid_sizes = [(int(h), int(w)) for h, w in valid_sizes]
        features = self.pixel_features(images, valid_sizes)
        if self.token_kind == "superpixel":
            if superpixels is None or any(s is None for s in superpixels):
                raise ValueError("superpixel tokens need the superpixels of every image (data.tokens=superpixel "
                                 "makes the dataset compute them)")
            tokens, token_maps = superpixel_tokens(features, valid_sizes, self.stride, superpixels)
        else:
            tokens, token_maps = pixel_tokens(features, valid_sizes, self.stride)
        decoded: DecoderOutput = self.decoder(tokens, num_queries=num_queries, generator=generator)
        return ImageSegmentorOutput(layers=decoded.layers, query_seed_token=decoded.query_seed_token,
                                    token_objectness=decoded.token_objectness, tokens=tokens, token_maps=token_maps)
