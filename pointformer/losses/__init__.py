"""Instance losses over query masks: the Influencer Loss (seeded ownership form, default), its
seeded sigmoid form, Mask3D's Hungarian criterion and ablations; see docs/losses.md.

Every loss is one ``LossDefinition`` in the registry (``pointformer.losses.registry``), declared
in its own module; importing this package registers the shipped ones. ``InstanceCriterion`` runs
any registered loss over a batch and every decoder stage; ``scene_loss`` runs it on one scene.
"""
from pointformer.losses import hungarian, influencer, influencer_sigmoid  # noqa: F401  (register the shipped losses)
from pointformer.losses.criterion import (InstanceCriterion, SceneInputs, StagePrediction, build_criterion,
                                          scene_loss)
from pointformer.losses.registry import (LossDefinition, QuerySetup, SceneLossInputs, get_loss, query_setup,
                                         register_loss, registered_losses)
from pointformer.losses.targets import TokenTargets

__all__ = [
    "InstanceCriterion",
    "LossDefinition",
    "QuerySetup",
    "SceneInputs",
    "SceneLossInputs",
    "StagePrediction",
    "TokenTargets",
    "build_criterion",
    "get_loss",
    "query_setup",
    "register_loss",
    "registered_losses",
    "scene_loss",
]
