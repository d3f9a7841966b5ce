"""Batch / deep-supervision criterion over any shipped loss, the loss registry, and the mask
activation each loss needs in the decoder.

The criterion sees predictions duck-typed (objects with ``class_logits``, ``mask_logits`` and
``background_logits`` lists per scene), so it never imports the models package.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pointformer.losses.hungarian import HUNGARIAN_TERM_WEIGHTS, matched_terms
from pointformer.losses.influencer import (
    INFLUENCER_TERM_WEIGHTS,
    check_ownership_temperature,
    influencer_terms,
    weighted_total,
)
from pointformer.losses.influencer_sigmoid import INFLUENCER_SIGMOID_TERM_WEIGHTS, influencer_sigmoid_terms
from pointformer.losses.matching import assign_many, matching_cost
from pointformer.losses.targets import PreparedScene, TokenTargets, prepare_scene, validate_inputs
from pointformer.losses.terms import upcast, zero_like_graph


@dataclass(frozen=True)
class LossSpec:
    """What the criterion needs to know about one loss.

    Attributes:
        activation: mask activation of the decoder ("ownership" or "sigmoid").
        seeded: the loss uses query seeds (candidate influencers); False = seeds are ignored.
        set_loss: matching-based (BCE/dice normalised by the batch's GT mask count).
        term_weights: default weights of the terms.
        hyper_parameters: default hyper-parameters (the accepted keyword names).
    """

    activation: str
    seeded: bool
    set_loss: bool
    term_weights: Mapping[str, float]
    hyper_parameters: Mapping[str, Any] = field(default_factory=dict)


LOSSES: dict[str, LossSpec] = {
    "influencer": LossSpec("ownership", True, False, INFLUENCER_TERM_WEIGHTS,
                           {"temperature": 0.5, "no_object_weight": 0.1}),
    "influencer_unseeded": LossSpec("ownership", False, False, INFLUENCER_TERM_WEIGHTS,
                                    {"temperature": 0.5, "no_object_weight": 0.1}),
    "influencer_sigmoid": LossSpec("sigmoid", True, False, INFLUENCER_SIGMOID_TERM_WEIGHTS,
                                   {"tau": 0.5, "bce_weight": 5.0, "dice_weight": 2.0, "no_object_weight": 0.1}),
    "hungarian": LossSpec("sigmoid", False, True, HUNGARIAN_TERM_WEIGHTS,
                          {"cost_class": 2.0, "cost_bce": 5.0, "cost_dice": 2.0, "no_object_weight": 0.1}),
    "greedy": LossSpec("sigmoid", False, True, HUNGARIAN_TERM_WEIGHTS,
                       {"cost_class": 2.0, "cost_bce": 5.0, "cost_dice": 2.0, "no_object_weight": 0.1}),
}


def loss_spec(name: str) -> LossSpec:
    """The registry entry of `name`; ValueError listing the shipped losses otherwise."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; shipped losses: {sorted(LOSSES)}")
    return LOSSES[name]


def mask_activation_for(loss_name: str) -> str:
    """"ownership" (softmax over background slot + queries) or "sigmoid": what the decoder's heads
    and masked attention must use for this loss."""
    return loss_spec(loss_name).activation


def _scene_terms(name: str, spec: LossSpec, hyper: Mapping[str, Any], mask_logits: Tensor,
                 background_logits: Optional[Tensor], class_logits: Tensor, scene: PreparedScene,
                 num_masks: Optional[float], assignment: Optional[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    if spec.activation == "ownership":
        if background_logits is None:
            raise ValueError(f"loss {name!r} needs background_logits (decoder mask_activation='ownership'), got None")
        return influencer_terms(mask_logits, background_logits, class_logits, scene, **hyper)
    if name == "influencer_sigmoid":
        return influencer_sigmoid_terms(mask_logits, class_logits, scene, **hyper)
    terms, _, _ = matched_terms(mask_logits, class_logits, scene, assigner=name, num_masks=num_masks,
                                assignment=assignment, **hyper)
    return terms


def _world_mean(value: float, device: torch.device) -> float:
    """Mean of `value` over DDP ranks (itself when torch.distributed is not initialised)."""
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t.item()) / dist.get_world_size()
    return value


class InstanceCriterion(nn.Module):
    """Any shipped loss over a batch of scenes and every decoder layer (deep supervision).

    Per layer, the per-scene terms are averaged over scenes (for the matching losses BCE and dice are
    summed and divided by the batch's GT mask count averaged over DDP ranks, as Mask3D does); the
    layer total is Σ term_weight·term; the loss is Σ layer_weight·layer total, plus
    objectness_weight·BCE(token objectness, foreground) when objectness logits are given.

    Args:
        loss: registry name ("influencer", "influencer_sigmoid", "hungarian", "greedy",
            "influencer_unseeded").
        term_weights: overrides of the loss's default term weights (unknown names are rejected).
        layer_weights: one weight per decoder stage (None: 1 for every stage).
        objectness_weight: weight of the token objectness BCE (used only when logits are given).
        **hyper_parameters: the loss's hyper-parameters (e.g. temperature, no_object_weight).
    """

    def __init__(
        self,
        *,
        loss: str = "influencer",
        term_weights: Optional[Mapping[str, float]] = None,
        layer_weights: Optional[Sequence[float]] = None,
        objectness_weight: float = 1.0,
        **hyper_parameters: Any,
    ) -> None:
        super().__init__()
        spec = loss_spec(loss)
        unknown = sorted(set(hyper_parameters) - set(spec.hyper_parameters))
        if unknown:
            raise ValueError(f"loss {loss!r} has no hyper-parameters {unknown}; accepted: {sorted(spec.hyper_parameters)}")
        weights = dict(spec.term_weights)
        for key, value in (term_weights or {}).items():
            if key not in weights:
                raise ValueError(f"term_weights: loss {loss!r} has no term {key!r}; terms: {sorted(weights)}")
            weights[key] = float(value)
        self.loss_name = loss
        self.spec = spec
        self.term_weights = weights
        self.layer_weights = None if layer_weights is None else [float(w) for w in layer_weights]
        self.objectness_weight = float(objectness_weight)
        self.hyper_parameters = {**spec.hyper_parameters, **hyper_parameters}
        if spec.activation == "ownership":
            check_ownership_temperature(self.hyper_parameters["temperature"])
        self._warned_unseeded = False

    @property
    def mask_activation(self) -> str:
        return self.spec.activation

    def extra_repr(self) -> str:
        return f"loss={self.loss_name!r}, term_weights={self.term_weights}, hyper_parameters={self.hyper_parameters}"

    def _prepare(self, layer0: Any, query_seed_token: Optional[Sequence[Optional[Tensor]]],
                 targets: Sequence[TokenTargets]) -> list[PreparedScene]:
        scenes = []
        for b, tgt in enumerate(targets):
            seeds = None
            if self.spec.seeded and query_seed_token is not None:
                seeds = query_seed_token[b]
            bg = None if layer0.background_logits is None else layer0.background_logits[b]
            try:
                validate_inputs(layer0.mask_logits[b], bg, layer0.class_logits[b], tgt.token_instance,
                                tgt.token_weight, tgt.instance_class, seeds,
                                need_background=self.spec.activation == "ownership")
            except ValueError as err:
                raise ValueError(f"scene {b} of the batch: {err}") from None
            scenes.append(prepare_scene(tgt.token_instance, tgt.token_weight, tgt.instance_class, seeds,
                                        layer0.mask_logits[b].shape[0]))
        if self.spec.seeded and not self._warned_unseeded and all(s.query_home is None for s in scenes):
            warnings.warn(f"loss {self.loss_name!r} got no query seeds (learned queries?): using the unseeded form, "
                          "which is known to collapse; use seeded queries", stacklevel=3)
            self._warned_unseeded = True
        return scenes

    def forward(
        self,
        layers: Sequence[Any],
        query_seed_token: Optional[Sequence[Optional[Tensor]]],
        targets: Sequence[TokenTargets],
        token_objectness: Optional[Sequence[Tensor] | Tensor] = None,
    ) -> dict[str, Tensor]:
        """
        Args:
            layers: per decoder stage, an object with ``class_logits`` (B tensors [N_b, C+1]),
                ``mask_logits`` (B tensors [N_b, P_b]) and ``background_logits`` (B tensors [P_b]
                or None).
            query_seed_token: B tensors long [N_b] (seed token per query, -1 none) or None.
            targets: B `TokenTargets`.
            token_objectness: B tensors [P_b] of logits (or one tensor [Σ P_b]), or None.
        Returns:
            {"loss": total with gradient} plus detached logs: each term of the last stage under its
            name, ``"layer{i}/{term}"`` for every stage, ``"objectness"`` when used.
        """
        if len(layers) == 0:
            raise ValueError("layers is empty: the criterion needs at least one decoder stage")
        batch = len(targets)
        if batch == 0:
            raise ValueError("targets is empty: the criterion needs at least one scene")
        for i, layer in enumerate(layers):
            for attr in ("class_logits", "mask_logits"):
                if len(getattr(layer, attr)) != batch:
                    raise ValueError(f"layers[{i}].{attr} has {len(getattr(layer, attr))} scenes, targets has {batch}")
        if query_seed_token is not None and len(query_seed_token) != batch:
            raise ValueError(f"query_seed_token has {len(query_seed_token)} scenes, targets has {batch}")
        layer_weights = self.layer_weights if self.layer_weights is not None else [1.0] * len(layers)
        if len(layer_weights) != len(layers):
            raise ValueError(f"layer_weights has {len(layer_weights)} entries but the decoder gave {len(layers)} stages")

        scenes = self._prepare(layers[0], query_seed_token, targets)
        num_masks = None
        if self.spec.set_loss:
            device = layers[0].mask_logits[0].device if batch else torch.device("cpu")
            num_masks = max(_world_mean(float(sum(s.num_valid_instances for s in scenes)), device), 1.0)

        total: Optional[Tensor] = None
        logs: dict[str, Tensor] = {}
        for i, (layer, lw) in enumerate(zip(layers, layer_weights)):
            per_term: dict[str, list[Tensor]] = {}
            assignments: list[Optional[tuple[Tensor, Tensor]]] = [None] * batch
            if self.spec.set_loss:
                assignments = list(self._assign_layer(layer, scenes))
            for b, scene in enumerate(scenes):
                bg = None if layer.background_logits is None else layer.background_logits[b]
                terms = _scene_terms(self.loss_name, self.spec, self.hyper_parameters, layer.mask_logits[b], bg,
                                     layer.class_logits[b], scene, num_masks, assignments[b])
                for key, value in terms.items():
                    per_term.setdefault(key, []).append(value)
            layer_terms = {}
            for key, values in per_term.items():
                stacked = torch.stack(values)
                # Matching losses: BCE/dice already divided by the batch's mask count -> sum.
                layer_terms[key] = stacked.sum() if self.spec.set_loss and key in ("bce", "dice") else stacked.mean()
            layer_total = weighted_total(layer_terms, self.term_weights)
            total = layer_total * lw if total is None else total + layer_total * lw
            for key, value in layer_terms.items():
                logs[f"layer{i}/{key}"] = value.detach()
                if i == len(layers) - 1:
                    logs[key] = value.detach()

        if token_objectness is not None and self.objectness_weight:
            objectness = self.objectness_loss(token_objectness, targets)
            logs["objectness"] = objectness.detach()
            total = total + self.objectness_weight * objectness
        assert total is not None
        return {"loss": total, **logs}

    def _assign_layer(self, layer: Any, scenes: Sequence[PreparedScene]) -> list[tuple[Tensor, Tensor]]:
        """Match every scene of one decoder stage with a single device→host copy."""
        cost_keys = ("cost_class", "cost_bce", "cost_dice")
        costs = [matching_cost(layer.mask_logits[b], layer.class_logits[b], scene,
                               **{k: self.hyper_parameters[k] for k in cost_keys})
                 for b, scene in enumerate(scenes)]
        return assign_many(costs, [s.instance_valid_index for s in scenes], self.loss_name)

    @staticmethod
    def objectness_loss(token_objectness: Sequence[Tensor] | Tensor, targets: Sequence[TokenTargets]) -> Tensor:
        """Token-weighted BCE of objectness logits against foreground (instance > 0), ignore tokens
        excluded; mean over scenes.

        Args:
            token_objectness: B tensors [P_b], or one tensor [Σ P_b].
        """
        counts = [t.num_tokens for t in targets]
        if isinstance(token_objectness, Tensor):
            if token_objectness.shape[0] != sum(counts):
                raise ValueError(f"token_objectness has {token_objectness.shape[0]} tokens, targets have {sum(counts)}")
            token_objectness = list(torch.split(token_objectness, counts))
        if len(token_objectness) != len(targets):
            raise ValueError(f"token_objectness has {len(token_objectness)} scenes, targets has {len(targets)}")
        losses = []
        for b, (logits, tgt) in enumerate(zip(token_objectness, targets)):
            if logits.shape != (tgt.num_tokens,):
                raise ValueError(f"token_objectness[{b}] must have shape [{tgt.num_tokens}], got {tuple(logits.shape)}")
            z = upcast(logits)
            w = tgt.token_weight.to(z.dtype) * (tgt.token_instance >= 0)
            y = (tgt.token_instance > 0).to(z.dtype)
            bce = nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
            denom = w.sum()
            losses.append((bce * w).sum() / denom if float(denom) > 0 else zero_like_graph(z))
        return torch.stack(losses).mean()


def build_criterion(cfg: Mapping[str, Any]) -> InstanceCriterion:
    """Criterion from a `loss` config group entry (see pointformer/configs/loss/*.yaml):
    keys ``name``, ``params`` (hyper-parameters), ``term_weights``, ``layer_weights``,
    ``objectness_weight``; other keys (e.g. ``postprocess``) are for other consumers."""
    if "name" not in cfg:
        raise ValueError(f"loss config needs a 'name' (one of {sorted(LOSSES)}), got keys {sorted(cfg)}")
    params = dict(cfg.get("params") or {})
    layer_weights = cfg.get("layer_weights")
    return InstanceCriterion(
        loss=str(cfg["name"]),
        term_weights=dict(cfg.get("term_weights") or {}),
        layer_weights=None if layer_weights is None else list(layer_weights),
        objectness_weight=float(cfg.get("objectness_weight", 1.0)),
        **params,
    )

