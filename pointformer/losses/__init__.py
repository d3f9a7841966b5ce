"""Instance losses over query masks: the Influencer Loss (seeded ownership form, default), its
seeded sigmoid form, Mask3D's Hungarian criterion and ablations; see docs/losses.md.

Functional cores (one scene, model-independent), all called as
``fn(mask_logits [N,P], background_logits [P] | None, class_logits [N,C+1], token_instance [P],
token_weight [P], instance_class [K], query_seed_token [N] | None, **hyper) -> dict[str, Tensor]``.
"""
from typing import Callable

from torch import Tensor

from pointformer.losses.criterion import LOSSES, InstanceCriterion, build_criterion, loss_spec, mask_activation_for
from pointformer.losses.hungarian import greedy_loss, hungarian_loss
from pointformer.losses.influencer import influencer_loss, influencer_unseeded_loss
from pointformer.losses.influencer_sigmoid import influencer_sigmoid_loss
from pointformer.losses.targets import TokenTargets

LOSS_FUNCTIONS: dict[str, Callable[..., dict[str, Tensor]]] = {
    "influencer": influencer_loss,
    "influencer_unseeded": influencer_unseeded_loss,
    "influencer_sigmoid": influencer_sigmoid_loss,
    "hungarian": hungarian_loss,
    "greedy": greedy_loss,
}

__all__ = [
    "LOSSES",
    "LOSS_FUNCTIONS",
    "InstanceCriterion",
    "TokenTargets",
    "build_criterion",
    "greedy_loss",
    "hungarian_loss",
    "influencer_loss",
    "influencer_sigmoid_loss",
    "influencer_unseeded_loss",
    "loss_spec",
    "mask_activation_for",
]
