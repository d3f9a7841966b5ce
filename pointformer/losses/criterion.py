"""The batch / deep-supervision criterion over any registered loss (``pointformer.losses.registry``).

The criterion sees predictions duck-typed (objects with ``class_logits``, ``mask_logits`` and
``background_logits`` lists per scene, e.g. :class:`StagePrediction`), so it never imports the
models package. It knows nothing about individual losses: their definitions say which activation,
seeds, matching and normalisation they need.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from pointformer.config import ConfigError
from pointformer.losses.matching import assign_many, matching_cost
from pointformer.losses.registry import LossDefinition, SceneLossInputs, get_loss
from pointformer.losses.targets import PreparedScene, TokenTargets, prepare_scene, validate_inputs
from pointformer.losses.terms import autocast_off, upcast, weighted_total, zero_like_graph
from pointformer.timing import Stopwatch

MATCHING_COST_KEYS = ("class_weight", "bce_weight", "dice_weight")


@dataclass(frozen=True)
class StagePrediction:
    """One decoder stage over a batch of B scenes (the shape the criterion reads).

    Attributes:
        class_logits: B tensors [N_b, C+1].
        mask_logits: B tensors [N_b, P_b].
        background_logits: B tensors [P_b] (ownership activation), or None.
    """

    class_logits: Sequence[Tensor]
    mask_logits: Sequence[Tensor]
    background_logits: Optional[Sequence[Tensor]] = None


@dataclass(frozen=True)
class SceneInputs:
    """Predictions and ground truth of one scene, for :func:`scene_loss`.

    Attributes:
        mask_logits: [N, P]; class_logits: [N, C+1]; background_logits: [P] or None.
        targets: the scene's token targets.
        query_seed_token: long [N] seed token per query (-1: none), or None (learned queries).
    """

    mask_logits: Tensor
    class_logits: Tensor
    targets: TokenTargets
    background_logits: Optional[Tensor] = None
    query_seed_token: Optional[Tensor] = None


def _world_mean(value: float, device: torch.device) -> float:
    """Mean of `value` over DDP ranks (itself when torch.distributed is not initialised)."""
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t.item()) / dist.get_world_size()
    return value


class InstanceCriterion(nn.Module):
    """A registered loss over a batch of scenes and every decoder stage (deep supervision).

    Per stage, the per-scene terms are averaged over scenes (terms the definition lists as
    ``batch_normalised_terms`` are already divided by the batch's GT mask count, averaged over DDP
    ranks as Mask3D does, and are summed); the stage total is Σ term_weight·term; the loss is
    Σ layer_weight·stage total, plus objectness_weight·BCE(token objectness, foreground) when
    objectness logits are given.

    Args:
        loss: a registered loss name or definition.
        term_weights: overrides of the loss's default term weights (unknown names are rejected).
        layer_weights: one weight per decoder stage (None: 1 for every stage).
        objectness_weight: weight of the token objectness BCE (used only when logits are given).
        assignment_timer: optional stopwatch charged with the matching of matching losses.
        **hyper_parameters: overrides of the loss's default hyper-parameters.
    """

    def __init__(
        self,
        *,
        loss: str | LossDefinition,
        term_weights: Optional[Mapping[str, float]] = None,
        layer_weights: Optional[Sequence[float]] = None,
        objectness_weight: float = 1.0,
        assignment_timer: Optional[Stopwatch] = None,
        **hyper_parameters: Any,
    ) -> None:
        super().__init__()
        definition = get_loss(loss) if isinstance(loss, str) else loss
        unknown = sorted(set(hyper_parameters) - set(definition.defaults))
        if unknown:
            raise ValueError(f"loss {definition.name!r} has no hyper-parameters {unknown}; "
                             f"accepted: {sorted(definition.defaults)}")
        weights = dict(definition.term_weights)
        for key, value in (term_weights or {}).items():
            if key not in weights:
                raise ValueError(
                    f"term_weights: loss {definition.name!r} has no term {key!r}; terms: {sorted(weights)}"
                )
            weights[key] = float(value)
        self.definition = definition
        self.term_weights = weights
        self.layer_weights = None if layer_weights is None else [float(w) for w in layer_weights]
        self.objectness_weight = float(objectness_weight)
        self.hyper_parameters = {**definition.defaults, **hyper_parameters}
        if definition.check is not None:
            definition.check(self.hyper_parameters)
        self.assignment_timer = assignment_timer
        self._warned_unseeded = False

    @property
    def mask_activation(self) -> str:
        return self.definition.activation

    def extra_repr(self) -> str:
        return (f"loss={self.definition.name!r}, term_weights={self.term_weights}, "
                f"hyper_parameters={self.hyper_parameters}")

    def prepare(self, stage0: Any, query_seed_token: Optional[Sequence[Optional[Tensor]]],
                targets: Sequence[TokenTargets]) -> list[PreparedScene]:
        """Validate the first stage against the targets and prepare every scene (seeds kept only
        when the loss uses them); warns once when a seeded loss gets no seeds."""
        scenes = []
        ownership = self.definition.activation == "ownership"
        for b, tgt in enumerate(targets):
            seeds = None
            if self.definition.uses_seeds and query_seed_token is not None:
                seeds = query_seed_token[b]
            bg = None if stage0.background_logits is None else stage0.background_logits[b]
            try:
                validate_inputs(stage0.mask_logits[b], bg, stage0.class_logits[b], tgt.token_instance,
                                tgt.token_weight, tgt.instance_class, seeds, need_background=ownership)
            except ValueError as err:
                raise ValueError(f"scene {b} of the batch: {err}") from None
            scenes.append(prepare_scene(tgt.token_instance, tgt.token_weight, tgt.instance_class, seeds,
                                        stage0.mask_logits[b].shape[0]))
        if self.definition.uses_seeds and not self._warned_unseeded and all(s.query_home is None for s in scenes):
            warnings.warn(f"loss {self.definition.name!r} got no query seeds (learned queries?): using the unseeded "
                          "form, which is known to collapse; use seeded queries", stacklevel=3)
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
                or None), e.g. :class:`StagePrediction`.
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
            raise ValueError(
                f"layer_weights has {len(layer_weights)} entries but the decoder gave {len(layers)} stages"
            )

        scenes = self.prepare(layers[0], query_seed_token, targets)
        num_masks = self.num_masks(scenes, layers[0].mask_logits[0].device)
        total: Optional[Tensor] = None
        logs: dict[str, Tensor] = {}
        for i, (layer, lw) in enumerate(zip(layers, layer_weights)):
            layer_terms = self.stage_terms(layer, scenes, num_masks)
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

    def num_masks(self, scenes: Sequence[PreparedScene], device: torch.device) -> Optional[float]:
        """Matching losses: the batch's valid GT mask count averaged over DDP ranks (at least 1)."""
        if self.definition.matcher is None:
            return None
        return max(_world_mean(float(sum(s.num_valid_instances for s in scenes)), device), 1.0)

    def stage_terms(self, stage: Any, scenes: Sequence[PreparedScene], num_masks: Optional[float]) -> dict[str, Tensor]:
        """The unweighted terms of one decoder stage over the batch (with gradient): the per-scene
        terms averaged over scenes, or summed for ``batch_normalised_terms``."""
        definition = self.definition
        assignments: Sequence[Optional[tuple[Tensor, Tensor]]] = [None] * len(scenes)
        if definition.matcher is not None:
            assignments = self.assign(stage, scenes)
        per_term: dict[str, list[Tensor]] = {}
        for b, scene in enumerate(scenes):
            inputs = SceneLossInputs(
                mask_logits=stage.mask_logits[b], class_logits=stage.class_logits[b],
                background_logits=None if stage.background_logits is None else stage.background_logits[b],
                scene=scene, assignment=assignments[b], num_masks=num_masks)
            # The terms upcast to float32 themselves; their sums over up to 10^5 weighted tokens
            # must not run in half precision.
            with autocast_off(inputs.mask_logits):
                terms = definition.terms(inputs, **self.hyper_parameters)
            for key, value in terms.items():
                per_term.setdefault(key, []).append(value)
        return {key: (torch.stack(values).sum() if key in definition.batch_normalised_terms
                      else torch.stack(values).mean())
                for key, values in per_term.items()}

    def assign(self, stage: Any, scenes: Sequence[PreparedScene]) -> list[tuple[Tensor, Tensor]]:
        """The matching of every scene of one decoder stage (matching losses), solved with a single
        device→host copy; timed by ``assignment_timer`` when one is set.

        Returns:
            per scene (query index [M_b], instance index [M_b]).
        """
        if self.definition.matcher is None:
            raise ValueError(f"loss {self.definition.name!r} does not match queries to instances")
        weights = {k: self.hyper_parameters[k] for k in MATCHING_COST_KEYS}
        timer = self.assignment_timer
        with timer if timer is not None else contextlib.nullcontext():
            costs = [matching_cost(stage.mask_logits[b], stage.class_logits[b], scene, **weights)
                     for b, scene in enumerate(scenes)]
            return assign_many(costs, [s.instance_valid_index for s in scenes], self.definition.matcher)

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


def build_criterion(settings: Any, *, assignment_timer: Optional[Stopwatch] = None) -> InstanceCriterion:
    """The criterion of the ``loss`` settings (``pointformer.config.LossSettings``, or a mapping with
    the same keys: ``name``, ``params``, ``term_weights``, ``layer_weights``, ``objectness_weight``).

    Raises ConfigError (a ValueError) naming the loss for unknown losses, terms or hyper-parameters."""
    get = settings.get if isinstance(settings, Mapping) else lambda key, default=None: getattr(settings, key, default)
    if get("name") is None:
        raise ConfigError("loss settings need a 'name' (a registered loss)")
    layer_weights = get("layer_weights")
    try:
        return InstanceCriterion(
            loss=str(get("name")),
            term_weights=dict(get("term_weights") or {}),
            layer_weights=None if layer_weights is None else list(layer_weights),
            objectness_weight=float(get("objectness_weight", 1.0)),
            assignment_timer=assignment_timer,
            **dict(get("params") or {}),
        )
    except ValueError as exc:
        raise ConfigError(f"loss={get('name')}: {exc}") from None


def scene_loss(loss: str | LossDefinition, inputs: SceneInputs, *, term_weights: Optional[Mapping[str, float]] = None,
               **hyper_parameters: Any) -> dict[str, Tensor]:
    """A registered loss on one scene and one decoder stage.

    Returns:
        {"loss": the weighted total} plus every unweighted term, all scalar tensors with gradient.
    """
    criterion = InstanceCriterion(loss=loss, term_weights=term_weights, **hyper_parameters)
    stage = StagePrediction(class_logits=[inputs.class_logits], mask_logits=[inputs.mask_logits],
                            background_logits=None if inputs.background_logits is None else [inputs.background_logits])
    seeds = None if inputs.query_seed_token is None else [inputs.query_seed_token]
    scenes = criterion.prepare(stage, seeds, [inputs.targets])
    terms = criterion.stage_terms(stage, scenes, criterion.num_masks(scenes, inputs.mask_logits.device))
    return {"loss": weighted_total(terms, criterion.term_weights), **terms}
