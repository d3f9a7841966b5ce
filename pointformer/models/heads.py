"""Prediction heads of the query decoder and the masked-attention rule derived from them.

Heads (shared by every decoder layer, applied before the first layer and after each one):
LayerNorm on the queries, a class head ``Linear(hidden, C+1)`` (last column = no-object), a
mask-embedding MLP, and — for the ownership activation — a learned background embedding ``e_0``.
Mask logits are dot products ``m_qp = <mask_embed(q), f_p>`` with per-token mask features ``f_p``;
the background logit of token p is ``<e_0, f_p>``.

The mask activation is a configuration string (``"ownership"`` or ``"sigmoid"``) chosen together with
the loss; the decoder never imports a loss.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["MASK_ACTIVATIONS", "PredictionHeads", "mask_probabilities", "attention_block_mask"]

MASK_ACTIVATIONS = ("ownership", "sigmoid")


class PredictionHeads(nn.Module):
    """Class, mask and background heads.

    Args:
        hidden_dim: query / mask-feature width.
        num_classes: C (the class head has C+1 outputs, the last one is no-object).
        mask_activation: ``"ownership"`` adds the learned background embedding.
        mask_mlp_layers: Linear layers of the mask-embedding MLP (Mask3D: Linear-ReLU-Linear, 2).
    """

    def __init__(self, *, hidden_dim: int, num_classes: int, mask_activation: str, mask_mlp_layers: int = 2) -> None:
        super().__init__()
        if mask_activation not in MASK_ACTIVATIONS:
            raise ValueError(f"mask_activation must be one of {MASK_ACTIVATIONS}, got {mask_activation!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if mask_mlp_layers < 1:
            raise ValueError(f"mask_mlp_layers must be >= 1, got {mask_mlp_layers}")
        self.mask_activation = mask_activation
        self.norm = nn.LayerNorm(hidden_dim)
        self.class_head = nn.Linear(hidden_dim, num_classes + 1)
        layers: list[nn.Module] = []
        for i in range(mask_mlp_layers):
            layers.append(nn.Linear(hidden_dim, hidden_dim))
            if i < mask_mlp_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        self.mask_embed = nn.Sequential(*layers)
        if mask_activation == "ownership":
            # Background slot e_0 of the softmax over {background, queries}; starts small so that
            # no side wins at initialisation.
            self.background_embedding = nn.Parameter(torch.randn(hidden_dim) * hidden_dim**-0.5)
        else:
            self.register_parameter("background_embedding", None)

    def forward(self, queries: Tensor, mask_features: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """
        Args:
            queries: [B, N, H] decoder queries.
            mask_features: [B, T, H] per-token mask features.
        Returns:
            class_logits [B, N, C+1], mask_logits [B, N, T], background_logits [B, T] (None for sigmoid).
        """
        q = self.norm(queries)
        class_logits = self.class_head(q)
        mask_logits = torch.einsum("bnh,bth->bnt", self.mask_embed(q), mask_features)
        background_logits = None
        if self.background_embedding is not None:
            background_logits = mask_features @ self.background_embedding.to(mask_features.dtype)
        return class_logits, mask_logits, background_logits


def mask_probabilities(
    mask_logits: Tensor,
    background_logits: Optional[Tensor],
    activation: str,
    query_padding_mask: Optional[Tensor] = None,
) -> Tensor:
    """Per-(query, token) mask probability under the chosen activation.

    Args:
        mask_logits: [B, N, T].
        background_logits: [B, T] (required for ``"ownership"``).
        activation: ``"ownership"`` — softmax per token over {background, queries};
            ``"sigmoid"`` — independent sigmoid per query.
        query_padding_mask: bool [B, N], True for padding queries (excluded from the softmax).
    Returns:
        float [B, N, T] probabilities.
    """
    if activation == "sigmoid":
        return mask_logits.sigmoid()
    if activation != "ownership":
        raise ValueError(f"mask activation must be one of {MASK_ACTIVATIONS}, got {activation!r}")
    if background_logits is None:
        raise ValueError("the ownership activation needs background logits")
    logits = mask_logits.float()
    if query_padding_mask is not None:
        logits = logits.masked_fill(query_padding_mask[:, :, None], -torch.inf)
    joint = torch.cat([background_logits.float()[:, None, :], logits], dim=1)  # [B, 1+N, T]
    return joint.softmax(dim=1)[:, 1:]


def attention_block_mask(
    mask_logits: Tensor,
    background_logits: Optional[Tensor],
    activation: str,
    *,
    key_padding_mask: Tensor,
    query_padding_mask: Optional[Tensor] = None,
) -> Tensor:
    """Masked-attention rule: a query attends to the tokens where its mask probability > 0.5.

    Padding tokens are always blocked. A query whose mask blocks every real token attends to all of
    them (otherwise its attention row would be all -inf, i.e. NaN).

    Args:
        mask_logits: [B, N, T]; background_logits: [B, T] or None (see ``mask_probabilities``).
        key_padding_mask: bool [B, T], True = padding token.
        query_padding_mask: bool [B, N], True = padding query.
    Returns:
        bool [B, N, T], True = blocked (the query does not attend to that token).
    """
    with torch.no_grad():
        if activation == "sigmoid":
            on = mask_logits > 0  # sigmoid(m) > 0.5 without computing it
        else:
            on = mask_probabilities(mask_logits, background_logits, activation, query_padding_mask) > 0.5
        blocked = ~on | key_padding_mask[:, None, :]
        everything_blocked = blocked.all(dim=-1, keepdim=True)
        return torch.where(everything_blocked, key_padding_mask[:, None, :].expand_as(blocked), blocked)
