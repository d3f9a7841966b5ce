"""The query decoder: queries cross-attend to tokens with masked attention and predict instances.

Modality-agnostic: it sees only ``Tokens`` (features, positions, weights, ragged layout), so the 3D
model (superpoint tokens) and the 2D branch (pixel tokens) share it.

Per layer (Mask2Former order): masked cross-attention queries -> tokens, self-attention among the
queries of a scene, FFN; each with a residual and LayerNorm (post-norm as Mask3D, or pre-norm).
Predictions (class logits, per-token mask logits, background logits) come from shared heads before
the first layer and after every layer (deep supervision). A layer's attention mask is the previous
prediction's "mask probability > 0.5", the probability being given by ``mask_activation``:
``"ownership"`` (softmax per token over {background slot, queries}; Influencer Loss) or ``"sigmoid"``
(independent per query; Hungarian baseline).

Queries:
- ``"seeded"`` (default): seed tokens by farthest-point sampling of token positions (optionally
  among the tokens an objectness head calls foreground); query content = a learned projection of the
  seed token's features, query position = the Fourier encoding of the seed position. The seed index
  travels with the query into the output (``query_seed_token``). A scene with fewer tokens than
  queries gets one query per token.
- ``"learned"``: DETR-style learned content and position embeddings (seed index -1).

Positions (``position_encoding``): ``"scene"`` (Mask3D) adds Fourier codes of scene-normalised
positions to keys and queries; ``"relative"`` (seeded queries) uses no absolute code: cross-attention,
self-attention and the mask logits get a learned penalty linear in the distance from the query's seed
(``DistanceBias``), so predictions do not depend on the extent of the scan they are made in (tiles).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointformer.models.heads import MASK_ACTIVATIONS, PredictionHeads, attention_block_mask
from pointformer.models.position_encoding import (
    POSITION_ENCODINGS,
    DistanceBias,
    FourierPositionEncoding,
    normalize_positions,
)
from pointformer.models.sampling import farthest_point_sampling, size_score_scale
from pointformer.models.tokens import Tokens

__all__ = ["LayerPrediction", "DecoderOutput", "MultiHeadAttention", "DecoderLayer", "QueryDecoder"]

QUERY_INITS = ("seeded", "learned")
SEED_SAMPLINGS = ("fps", "objectness", "size")


@dataclass
class LayerPrediction:
    """Predictions of one decoder stage, per scene (N_b queries, P_b tokens of scene b).

    Attributes:
        class_logits: B tensors [N_b, C+1] (last column = no-object).
        mask_logits: B tensors [N_b, P_b].
        background_logits: B tensors [P_b] — the learned background slot of the ownership form;
            None for the sigmoid activation.
    """

    class_logits: list[Tensor]
    mask_logits: list[Tensor]
    background_logits: Optional[list[Tensor]]


@dataclass
class DecoderOutput:
    """Everything the losses and the postprocessing need.

    Attributes:
        layers: predictions before each layer and after the last one (L+1 entries; the last is final).
        query_seed_token: B tensors long [N_b]: scene-local index of each query's seed token
            (-1 for learned queries).
        token_objectness: B tensors [P_b] of objectness logits, or None without the objectness head.
    """

    layers: list[LayerPrediction]
    query_seed_token: list[Tensor]
    token_objectness: Optional[list[Tensor]]

    @property
    def final(self) -> LayerPrediction:
        return self.layers[-1]

    @property
    def num_queries(self) -> list[int]:
        """Queries per scene."""
        return [int(s.numel()) for s in self.query_seed_token]


class MultiHeadAttention(nn.Module):
    """Multi-head attention on ``scaled_dot_product_attention`` with a boolean block mask.

    Args:
        dim: model width; num_heads: heads (dim must divide); dropout: attention dropout.
    """

    def __init__(self, *, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, blocked: Tensor,
                bias: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            query: [B, N, H]; key, value: [B, T, H].
            blocked: bool [B, N, T] or broadcastable, True = do not attend. Every row must keep at
                least one key (the callers guarantee it; an empty row would give NaN).
            bias: optional float [B, heads, N, T] added to the attention logits (e.g. ``DistanceBias``).
        Returns:
            [B, N, H].
        """
        b, n, h = query.shape
        t = key.shape[1]
        heads = self.num_heads

        def split_heads(x: Tensor, length: int) -> Tensor:
            return x.view(b, length, heads, h // heads).transpose(1, 2)

        q = split_heads(self.q_proj(query), n)
        k = split_heads(self.k_proj(key), t)
        v = split_heads(self.v_proj(value), t)
        if bias is None:
            attn_mask = ~blocked[:, None]
        else:
            attn_mask = bias.to(q.dtype).masked_fill(blocked[:, None], -torch.inf)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h))


class DecoderLayer(nn.Module):
    """Masked cross-attention -> self-attention -> FFN, each with residual + LayerNorm.

    Args:
        hidden_dim, num_heads, ffn_dim, dropout: sizes; pre_norm: LayerNorm before each block
            instead of after the residual (Mask3D uses post-norm).
    """

    def __init__(
        self, *, hidden_dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0, pre_norm: bool = False
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.cross_attn = MultiHeadAttention(dim=hidden_dim, num_heads=num_heads, dropout=dropout)
        self.self_attn = MultiHeadAttention(dim=hidden_dim, num_heads=num_heads, dropout=dropout)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn_dim, hidden_dim)
        )
        self.norm_cross = nn.LayerNorm(hidden_dim)
        self.norm_self = nn.LayerNorm(hidden_dim)
        self.norm_ffn = nn.LayerNorm(hidden_dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        queries: Tensor,
        query_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        cross_blocked: Tensor,
        self_blocked: Tensor,
        cross_bias: Optional[Tensor] = None,
        self_bias: Optional[Tensor] = None,
    ) -> Tensor:
        """
        Args:
            queries, query_pos: [B, N, H]; memory, memory_pos: [B, T, H].
            cross_blocked: bool [B, N, T]; self_blocked: bool [B, 1, N] (padding queries as keys).
            cross_bias, self_bias: optional float attention-logit biases [B, heads, N, T] / [B, heads, N, N].
        Returns:
            [B, N, H] updated queries.
        """
        keys = memory + memory_pos
        if self.pre_norm:
            q = self.norm_cross(queries)
            queries = queries + self.drop(self.cross_attn(q + query_pos, keys, memory, cross_blocked, cross_bias))
            q = self.norm_self(queries)
            queries = queries + self.drop(self.self_attn(q + query_pos, q + query_pos, q, self_blocked, self_bias))
            return queries + self.drop(self.ffn(self.norm_ffn(queries)))
        queries = self.norm_cross(
            queries + self.drop(self.cross_attn(queries + query_pos, keys, memory, cross_blocked, cross_bias))
        )
        q = queries + query_pos
        queries = self.norm_self(queries + self.drop(self.self_attn(q, q, queries, self_blocked, self_bias)))
        return self.norm_ffn(queries + self.drop(self.ffn(queries)))


class QueryDecoder(nn.Module):
    """Transformer query decoder over a ragged batch of tokens.

    Args:
        token_dim: D, width of ``Tokens.features``.
        num_classes: C semantic classes (class logits have C+1 columns, the last = no-object).
        hidden_dim, num_heads, ffn_dim: transformer sizes (Mask3D: 128, 8, 1024).
        num_layers: decoder layers applied (predictions come out num_layers+1 times).
        num_unique_layers: distinct weight sets; layer i uses weights i % num_unique_layers
            (Mask3D: 12 layers = 3 passes sharing 4 weight sets). None = num_layers (no sharing).
        num_queries: queries in training; eval_num_queries: in eval mode (None = num_queries; ignored
            with a warning for learned queries, whose set cannot change size);
            ``forward(num_queries=...)`` overrides both.
        query_init: "seeded" (default) or "learned".
        mask_activation: "ownership" (softmax over {background, queries}) or "sigmoid".
        seed_sampling: "fps", "objectness" (FPS among tokens the objectness head calls foreground
            first, then among the rest) or "size" (size-aware FPS: the distance to the picked seeds is
            scaled by ``(median weight / token weight) ** seed_size_alpha``, favouring small superpoints;
            ``pointformer.models.sampling.size_score_scale``).
        seed_size_alpha: strength of the "size" seeding (0 = plain FPS).
        objectness_head: add the token objectness head (default: on iff seed_sampling="objectness";
            it can be trained with "fps" seeding too, to measure it before relying on it).
        objectness_threshold: probability above which a token counts as foreground for seeding.
        pos_dim: d of ``Tokens.positions`` (3 for xyz, 2 for pixels).
        pos_scale: standard deviation of the Fourier frequencies (``position_encoding="scene"``).
        position_encoding: ``"scene"`` (Fourier codes of scene-normalised positions, Mask3D) or
            ``"relative"`` (seeded queries only: distance-to-seed penalties in attention and mask logits,
            independent of the scan's extent; module docstring).
        attention_radius: with ``position_encoding="relative"``: a query attends only to tokens and to other
            queries whose seeds lie within this distance of its seed (None: every token, with the distance
            penalty only). Bounds how far context reaches a prediction (tiles; docs/inference.md).
        pre_norm, dropout: layer options.
        masked_attention: turn Mask2Former's masked attention off (ablation).
        mask_mlp_layers: Linear layers of the mask-embedding MLP.
    """

    def __init__(
        self,
        *,
        token_dim: int,
        num_classes: int,
        hidden_dim: int = 128,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        num_layers: int = 6,
        num_unique_layers: Optional[int] = None,
        num_queries: int = 100,
        eval_num_queries: Optional[int] = None,
        query_init: str = "seeded",
        mask_activation: str = "ownership",
        seed_sampling: str = "fps",
        objectness_head: Optional[bool] = None,
        objectness_threshold: float = 0.5,
        seed_size_alpha: float = 0.5,
        pos_dim: int = 3,
        pos_scale: float = 1.0,
        position_encoding: str = "scene",
        attention_radius: Optional[float] = None,
        pre_norm: bool = False,
        dropout: float = 0.0,
        masked_attention: bool = True,
        mask_mlp_layers: int = 2,
    ) -> None:
        super().__init__()
        if query_init not in QUERY_INITS:
            raise ValueError(f"query_init must be one of {QUERY_INITS}, got {query_init!r}")
        if mask_activation not in MASK_ACTIVATIONS:
            raise ValueError(f"mask_activation must be one of {MASK_ACTIVATIONS}, got {mask_activation!r}")
        if seed_sampling not in SEED_SAMPLINGS:
            raise ValueError(f"seed_sampling must be one of {SEED_SAMPLINGS}, got {seed_sampling!r}")
        if position_encoding not in POSITION_ENCODINGS:
            raise ValueError(f"position_encoding must be one of {POSITION_ENCODINGS}, got {position_encoding!r}")
        if position_encoding == "relative" and query_init != "seeded":
            raise ValueError("position_encoding='relative' measures distances from query seeds: it needs "
                             "query_init='seeded'")
        if attention_radius is not None and (position_encoding != "relative" or not attention_radius > 0):
            raise ValueError(f"attention_radius={attention_radius!r}: needs position_encoding='relative' and a "
                             "positive distance")
        if objectness_head is None:
            objectness_head = seed_sampling == "objectness"
        if seed_sampling == "objectness" and not objectness_head:
            raise ValueError("seed_sampling='objectness' needs objectness_head=True")
        if seed_sampling == "objectness" and query_init != "seeded":
            raise ValueError("seed_sampling='objectness' only applies to query_init='seeded'")
        for name, value in (("token_dim", token_dim), ("num_queries", num_queries), ("hidden_dim", hidden_dim)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if eval_num_queries is not None and eval_num_queries < 1:
            raise ValueError(f"eval_num_queries must be positive, got {eval_num_queries}")
        if query_init == "learned" and eval_num_queries is not None and eval_num_queries != num_queries:
            # A learned query set cannot change size; configs written for seeded queries (100 / 150)
            # must still build when the loss switches to learned queries.
            warnings.warn(
                f"learned queries: eval_num_queries={eval_num_queries} is ignored, evaluation uses the "
                f"{num_queries} learned embeddings",
                stacklevel=2,
            )
            eval_num_queries = None
        num_unique_layers = num_layers if num_unique_layers is None else num_unique_layers
        if num_layers and not 1 <= num_unique_layers <= num_layers:
            raise ValueError(f"num_unique_layers must be in 1..num_layers={num_layers}, got {num_unique_layers}")
        if seed_size_alpha < 0:
            raise ValueError(f"seed_size_alpha must be >= 0, got {seed_size_alpha}")
        if not 0.0 < objectness_threshold < 1.0:
            raise ValueError(f"objectness_threshold must be a probability in (0, 1), got {objectness_threshold}")

        self.token_dim = token_dim
        self.hidden_dim = hidden_dim
        self.num_classes = num_classes
        self.num_layers = num_layers
        self.num_queries = num_queries
        self.eval_num_queries = eval_num_queries
        self.query_init = query_init
        self.mask_activation = mask_activation
        self.seed_sampling = seed_sampling
        self.seed_size_alpha = seed_size_alpha
        self.objectness_logit_threshold = math.log(objectness_threshold / (1.0 - objectness_threshold))
        self.pos_dim = pos_dim
        self.position_encoding = position_encoding
        self.attention_radius = attention_radius
        self.masked_attention = masked_attention

        # Keys/values of cross-attention; LayerNorm keeps token scales comparable across backbones.
        self.input_proj = nn.Sequential(nn.Linear(token_dim, hidden_dim), nn.LayerNorm(hidden_dim))
        self.mask_feature_proj = nn.Linear(token_dim, hidden_dim)
        if position_encoding == "scene":
            self.pos_encoding = FourierPositionEncoding(pos_dim=pos_dim, out_dim=hidden_dim, scale=pos_scale)
            self.cross_distance = self.self_distance = self.mask_distance = None
        else:
            self.pos_encoding = None
            self.cross_distance = DistanceBias(num_heads=num_heads)
            self.self_distance = DistanceBias(num_heads=num_heads)
            # masks: a gentle start (1 logit at 2 m), so that whole large objects can still be owned
            self.mask_distance = DistanceBias(num_heads=1, min_slope=0.5, max_slope=0.5)
        self.objectness = nn.Linear(hidden_dim, 1) if objectness_head else None
        if query_init == "seeded":
            self.query_proj = nn.Linear(token_dim, hidden_dim)
            self.query_content = self.query_pos_embed = None
        else:
            self.query_proj = None
            self.query_content = nn.Embedding(num_queries, hidden_dim)
            self.query_pos_embed = nn.Embedding(num_queries, hidden_dim)
        self.layers = nn.ModuleList(
            DecoderLayer(
                hidden_dim=hidden_dim, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout, pre_norm=pre_norm
            )
            for _ in range(num_unique_layers if num_layers else 0)
        )
        self.heads = PredictionHeads(
            hidden_dim=hidden_dim, num_classes=num_classes, mask_activation=mask_activation,
            mask_mlp_layers=mask_mlp_layers,
        )

    # ------------------------------------------------------------------ helpers
    def _check_tokens(self, tokens: Tokens) -> None:
        if tokens.features.shape[1] != self.token_dim:
            raise ValueError(
                f"QueryDecoder: tokens have {tokens.features.shape[1]} features, expected token_dim={self.token_dim}"
            )
        if tokens.positions.shape[1] != self.pos_dim:
            raise ValueError(
                f"QueryDecoder: tokens have {tokens.positions.shape[1]}-d positions, expected pos_dim={self.pos_dim}"
            )
        filled = torch.zeros(tokens.batch_size, dtype=torch.long, device=tokens.device)
        filled.index_add_(0, tokens.batch_index(), (tokens.weights > 0).long())
        empty = (filled == 0).nonzero().flatten()
        if empty.numel():
            raise ValueError(f"QueryDecoder: scene(s) {empty.tolist()} of the batch have no tokens with weight > 0")

    def _resolve_num_queries(self, num_queries: Optional[int]) -> int:
        if num_queries is None:
            num_queries = self.eval_num_queries if (not self.training and self.eval_num_queries) else self.num_queries
        if num_queries < 1:
            raise ValueError(f"num_queries must be positive, got {num_queries}")
        if self.query_init == "learned" and num_queries > self.num_queries:
            raise ValueError(
                f"learned queries: asked for {num_queries} queries but the decoder has {self.num_queries} embeddings"
            )
        return num_queries

    def _given_seeds(self, seed_tokens: list[Tensor], key_pad: Tensor) -> Tensor:
        """Explicit seed tokens as a padded long [B, N] (-1 = padding), checked against the tokens."""
        if len(seed_tokens) != key_pad.shape[0]:
            raise ValueError(f"seed_tokens: got {len(seed_tokens)} scenes, the tokens hold {key_pad.shape[0]}")
        width = max(1, max(int(s.numel()) for s in seed_tokens))
        seeds = torch.full((key_pad.shape[0], width), -1, dtype=torch.long, device=key_pad.device)
        for b, s in enumerate(seed_tokens):
            s = s.to(key_pad.device).long()
            if s.numel() == 0:
                raise ValueError(f"seed_tokens: scene {b} has no seed")
            if int(s.min()) < 0 or int(s.max()) >= key_pad.shape[1] or bool(key_pad[b, s].any()):
                raise ValueError(f"seed_tokens: scene {b} has seeds outside its tokens of weight > 0")
            seeds[b, : s.numel()] = s
        return seeds

    # ------------------------------------------------------------------ forward
    def forward(
        self, tokens: Tokens, *, num_queries: Optional[int] = None, generator: Optional[torch.Generator] = None,
        seed_tokens: Optional[list[Tensor]] = None,
    ) -> DecoderOutput:
        """
        Args:
            tokens: ragged batch; every scene needs at least one token with weight > 0. Tokens of
                weight 0 are empty: they get predictions but are never attended to nor seeded.
            num_queries: queries per scene (default: ``num_queries`` in training, ``eval_num_queries``
                in eval mode). Seeded queries: a scene with P_b < N tokens gets P_b queries.
            generator: seeded queries only — draws the first FPS seed at random (default: the token
                farthest from the centroid, deterministic).
            seed_tokens: seeded queries only — B tensors long [N_b] of scene-local tokens (weight > 0)
                to seed the queries at, instead of sampling them (``num_queries`` is then ignored); used
                by the re-seeding pass of ``pointformer.inference.reseed``.
        Returns:
            ``DecoderOutput`` with per-scene lists.
        """
        self._check_tokens(tokens)
        n_req = self._resolve_num_queries(num_queries)
        features, key_pad = tokens.pad(tokens.features)  # [B, T, D], [B, T]
        filled = tokens.weights > 0
        # Empty tokens (weight 0, e.g. superpoints cropped away) get predictions but are treated like
        # padding for attention, seeding and the bounding box.
        key_pad = key_pad | ~tokens.pad(filled, value=False)[0]
        positions, _ = tokens.pad(tokens.positions)  # [B, T, d] raw positions (metric FPS)
        batch_size = features.shape[0]

        memory = self.input_proj(features)  # [B, T, H]
        if self.pos_encoding is not None:
            normalized, _ = tokens.pad(normalize_positions(tokens.positions, tokens.offsets, valid=filled))
            memory_pos = self.pos_encoding(normalized).to(memory.dtype)  # [B, T, H]
        else:
            memory_pos = torch.zeros_like(memory)
        mask_features = self.mask_feature_proj(features)  # [B, T, H]
        objectness = self.objectness(memory).squeeze(-1) if self.objectness is not None else None  # [B, T]

        if self.query_init == "seeded":
            if seed_tokens is not None:
                seeds = self._given_seeds(seed_tokens, key_pad)
            else:
                priority = score_scale = None
                if self.seed_sampling == "objectness":
                    priority = objectness.detach() > self.objectness_logit_threshold
                elif self.seed_sampling == "size":
                    score_scale = size_score_scale(tokens.pad(tokens.weights)[0], ~key_pad, self.seed_size_alpha)
                seeds = farthest_point_sampling(
                    positions, ~key_pad, min(n_req, features.shape[1]), priority=priority, generator=generator,
                    score_scale=score_scale,
                )  # [B, N]
            query_pad = seeds < 0
            safe = seeds.clamp_min(0)
            rows = torch.arange(batch_size, device=seeds.device)[:, None]
            queries = self.query_proj(features[rows, safe])  # [B, N, H]
            query_pos = memory_pos[rows, safe]
        else:
            if seed_tokens is not None:
                raise ValueError("seed_tokens: only seeded queries (query_init='seeded') have seed tokens")
            seeds = torch.full((batch_size, n_req), -1, dtype=torch.long, device=features.device)
            query_pad = torch.zeros(batch_size, n_req, dtype=torch.bool, device=features.device)
            queries = self.query_content.weight[:n_req].unsqueeze(0).expand(batch_size, -1, -1)
            query_pos = self.query_pos_embed.weight[:n_req].unsqueeze(0).expand(batch_size, -1, -1)

        self_blocked = query_pad[:, None, :]  # padding queries are never attended to
        cross_bias = self_bias = mask_bias = cross_far = None
        if self.position_encoding == "relative":
            seed_pos = positions[rows, safe].float()  # [B, N, d]
            # exact distances (the matmul form of cdist differs between a scene alone and in a batch)
            exact = "donot_use_mm_for_euclid_dist"
            cross_distance = torch.cdist(seed_pos, positions.float(), compute_mode=exact)  # [B, N, T]
            seed_distance = torch.cdist(seed_pos, seed_pos, compute_mode=exact)  # [B, N, N]
            cross_bias = self.cross_distance(cross_distance)  # [B, heads, N, T]
            self_bias = self.self_distance(seed_distance)  # [B, heads, N, N]
            mask_bias = self.mask_distance(cross_distance)[:, 0]  # [B, N, T]
            if self.attention_radius is not None:
                # the seed token itself is never far; padding queries (no seed) are not cut, so that no
                # attention row is ever empty (an empty row gives NaN, and 0 * NaN reaches every query)
                cross_far = (cross_distance > self.attention_radius) & ~query_pad[:, :, None]
                # a query always sees itself (rows of padding queries must not be empty either)
                own = torch.eye(seeds.shape[1], dtype=torch.bool, device=seeds.device)[None]
                self_blocked = (self_blocked | (seed_distance > self.attention_radius)) & ~own  # [B, N, N]

        def predict(queries: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
            class_logits, mask_logits, background_logits = self.heads(queries, mask_features)
            if mask_bias is not None:
                mask_logits = mask_logits + mask_bias.to(mask_logits.dtype)
            return class_logits, mask_logits, background_logits

        stages = [predict(queries)]
        for i in range(self.num_layers):
            mask_logits, background_logits = stages[-1][1], stages[-1][2]
            if self.masked_attention:
                cross_blocked = attention_block_mask(
                    mask_logits, background_logits, self.mask_activation,
                    key_padding_mask=key_pad, query_padding_mask=query_pad,
                )
            else:
                cross_blocked = key_pad[:, None, :]
            if cross_far is not None:
                near = cross_blocked | cross_far
                # a mask lying wholly beyond the radius: attend to every token within it instead
                cross_blocked = torch.where(near.all(-1, keepdim=True), key_pad[:, None, :] | cross_far, near)
            layer = self.layers[i % len(self.layers)]
            queries = layer(queries, query_pos, memory, memory_pos, cross_blocked, self_blocked, cross_bias, self_bias)
            stages.append(predict(queries))

        token_counts = tokens.counts.tolist()
        query_counts = (~query_pad).sum(1).tolist()
        layers = []
        for class_logits, mask_logits, background_logits in stages:
            layers.append(
                LayerPrediction(
                    class_logits=[class_logits[b, : query_counts[b]] for b in range(batch_size)],
                    mask_logits=[mask_logits[b, : query_counts[b], : token_counts[b]] for b in range(batch_size)],
                    background_logits=None
                    if background_logits is None
                    else [background_logits[b, : token_counts[b]] for b in range(batch_size)],
                )
            )
        return DecoderOutput(
            layers=layers,
            query_seed_token=[seeds[b, : query_counts[b]] for b in range(batch_size)],
            token_objectness=(
                None if objectness is None else [objectness[b, : token_counts[b]] for b in range(batch_size)]
            ),
        )
