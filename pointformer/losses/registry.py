"""The loss registry: the one place a loss is declared.

A loss is one :class:`LossDefinition` registered at module level (``register_loss(...)``) next to
its terms function, plus one YAML file in ``configs/loss/``. The definition carries everything
the rest of the system needs to know about the loss: the criterion dispatches through it (no
branches on loss names), and the model and the postprocessing read the mask activation and the
query initialisation from :func:`query_setup`.

Shipped losses register when ``pointformer.losses`` is imported; a user's loss registers when its
module is imported (e.g. ``pointformer train --import mypackage.myloss``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from torch import Tensor

from pointformer.losses.targets import PreparedScene

ACTIVATIONS = ("ownership", "sigmoid")
QUERY_INITS = ("seeded", "learned")


@dataclass(frozen=True)
class SceneLossInputs:
    """One scene at one decoder stage, as a loss's terms function reads it.

    Attributes:
        mask_logits: [N, P] query-token mask logits.
        class_logits: [N, C+1] (last column = no-object).
        background_logits: [P] logits of the background slot (ownership activation), else None.
        scene: the prepared targets (``targets.prepare_scene``), with the query seeds when the
            loss uses them.
        assignment: matching losses only: (query index [M], instance index [M]) solved by the
            criterion for the whole batch.
        num_masks: matching losses only: the BCE/dice normaliser (the batch's GT mask count).
    """

    mask_logits: Tensor
    class_logits: Tensor
    background_logits: Optional[Tensor]
    scene: PreparedScene
    assignment: Optional[tuple[Tensor, Tensor]] = None
    num_masks: Optional[float] = None


TermsFunction = Callable[..., dict[str, Tensor]]
"""``terms(inputs: SceneLossInputs, **hyper_parameters) -> {term name: scalar tensor}`` (unweighted)."""


@dataclass(frozen=True)
class LossDefinition:
    """Everything about one loss.

    Attributes:
        name: the registry key and the ``name`` of its ``configs/loss/<name>.yaml``.
        terms: the per-scene terms function (see :data:`TermsFunction`); runs with autocast off.
        activation: the decoder's mask activation, "ownership" (softmax over a background slot and
            the queries; needs ``background_logits``) or "sigmoid".
        query_init: the queries it is meant for, "seeded" (FPS seeds) or "learned".
        uses_seeds: the terms read the query seeds (candidate influencers); False: seeds are dropped.
        term_weights: default weight of every term (the accepted term names).
        defaults: default hyper-parameters (the accepted keyword names).
        matcher: "hungarian" or "greedy" for matching losses: the criterion solves the batch's
            assignment (cost weights ``class_weight``, ``bce_weight``, ``dice_weight``) and hands it
            to the terms; None: no matching.
        batch_normalised_terms: terms already divided by a batch-wide count (``num_masks``), summed
            over scenes instead of averaged.
        check: validates the merged hyper-parameters (raises ValueError), or None.
    """

    name: str
    terms: TermsFunction
    activation: str
    query_init: str
    uses_seeds: bool
    term_weights: Mapping[str, float]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    matcher: Optional[str] = None
    batch_normalised_terms: tuple[str, ...] = ()
    check: Optional[Callable[[Mapping[str, Any]], None]] = None

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"loss {self.name!r}: activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.query_init not in QUERY_INITS:
            raise ValueError(f"loss {self.name!r}: query_init must be one of {QUERY_INITS}, got {self.query_init!r}")
        unknown = sorted(set(self.batch_normalised_terms) - set(self.term_weights))
        if unknown:
            raise ValueError(
                f"loss {self.name!r}: batch_normalised_terms {unknown} are not terms {sorted(self.term_weights)}"
            )


_REGISTRY: dict[str, LossDefinition] = {}


def register_loss(definition: LossDefinition) -> LossDefinition:
    """Add ``definition`` to the registry (returns it, for a module-level declaration).

    Registering the same definition again (a module imported twice) is a no-op; another
    definition under a taken name is a ValueError.
    """
    existing = _REGISTRY.get(definition.name)
    if existing is not None and existing != definition:
        raise ValueError(f"a different loss is already registered as {definition.name!r}")
    _REGISTRY[definition.name] = definition
    return definition


def get_loss(name: str) -> LossDefinition:
    """The definition registered as ``name``; ValueError listing the registered losses otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; registered losses: {registered_losses()}")
    return _REGISTRY[name]


def registered_losses() -> list[str]:
    return sorted(_REGISTRY)


@dataclass(frozen=True)
class QuerySetup:
    """What a loss requires of the decoder: its mask activation and its query initialisation."""

    mask_activation: str
    query_init: str


def query_setup(loss: str, query_init: Optional[str] = None) -> QuerySetup:
    """The decoder setup for ``loss``: its registered activation, and its registered query
    initialisation unless ``query_init`` (the model config's ``decoder.query_init``) overrides it."""
    definition = get_loss(loss)
    chosen = definition.query_init if query_init in (None, "", "null") else str(query_init)
    if chosen not in QUERY_INITS:
        raise ValueError(f"query_init must be one of {QUERY_INITS} or null (the loss's choice), got {query_init!r}")
    return QuerySetup(mask_activation=definition.activation, query_init=chosen)
