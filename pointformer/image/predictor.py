"""Prediction with a 2D model: the one forward pass + postprocessing (validation, evaluate-model,
infer and the demo all run ``predict_images``), and ``ImagePredictor`` (checkpoint -> model ->
COCO-format predictions of a split or of one image file).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from pointformer.config import ConfigError, apply_overrides
from pointformer.config.compose import load_config_yaml
from pointformer.image.build import build_image_model, build_postprocessor, make_image_dataset, superpixel_settings
from pointformer.image.dataset import CocoInstanceDataset, ImageBatch, ImageSample, collate_images, read_image
from pointformer.image.evaluation import (AnyPrediction, CocoResult, EncodedPrediction, ImagePrediction,
                                          encode_prediction, evaluate_coco)
from pointformer.image.model import ImageSegmentorOutput, InstanceSegmentor2D
from pointformer.image.settings import ImageRunSettings, is_image_config
from pointformer.image.superpixels import image_superpixels
from pointformer.image.transforms import AnnotatedImage, eval_transform
from pointformer.inference.instances import InstancePrediction
from pointformer.inference.postprocess import Postprocessor
from pointformer.io.checkpoint import load_checkpoint, load_model_weights

__all__ = ["model_inputs", "resize_masks", "predict_image_instances", "image_prediction", "predict_images",
           "ImagePredictor"]


def model_inputs(batch: ImageBatch) -> tuple[Tensor, list[tuple[int, int]], Optional[list[Tensor]]]:
    """(images [B, 3, H, W], valid sizes, superpixels or None) of a batch: the model's arguments."""
    sizes = [(int(s.image.shape[-2]), int(s.image.shape[-1])) for s in batch.samples]
    superpixels = [s.superpixels for s in batch.samples]
    return batch.images, sizes, (None if any(s is None for s in superpixels) else superpixels)


def resize_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """bool [M, h, w] -> bool [M, H0, W0] (nearest; the prediction at the original image size)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size))
    return F.interpolate(masks[None].float(), size=tuple(size), mode="nearest")[0] > 0.5


@torch.no_grad()
def predict_image_instances(model: InstanceSegmentor2D, batch: ImageBatch, postprocessor: Postprocessor, *,
                            seed: int) -> tuple[ImageSegmentorOutput, list[InstancePrediction]]:
    """The forward pass and the loss family's postprocessing of every image of ``batch`` (on the model's
    device): the model output and, per image, instances over its tokens.

    ``seed`` seeds the first FPS query (reproducible predictions); the query count is the model's
    evaluation count.
    """
    images, sizes, superpixels = model_inputs(batch)
    generator = torch.Generator(device=images.device)
    generator.manual_seed(seed)
    out = model(images, sizes, superpixels, generator=generator)
    final = out.final
    weights = out.tokens.split(out.tokens.weights)
    instances = []
    for b in range(len(batch.samples)):
        background = None if final.background_logits is None else final.background_logits[b].float()
        instances.append(postprocessor(final.mask_logits[b].float(), background, final.class_logits[b].float(),
                                       weights[b].float()))
    return out, instances


def image_prediction(instances: InstancePrediction, token_map: Tensor, sample: ImageSample) -> ImagePrediction:
    """Token instances -> an ``ImagePrediction`` at the original image size: token masks become pixel
    masks through ``token_map`` long [h, w], then are resized (nearest) to the file's (H0, W0)."""
    pixel_masks = instances.masks[:, token_map]  # [M, h, w]
    return ImagePrediction(image_id=int(sample.image_id),
                           masks=resize_masks(pixel_masks, sample.original_size).cpu().numpy(),
                           classes=instances.class_index.cpu().numpy(),
                           scores=instances.scores.float().cpu().numpy())


def predict_images(model: InstanceSegmentor2D, batch: ImageBatch, postprocessor: Postprocessor, *,
                   seed: int) -> list[ImagePrediction]:
    """Instances of every image of ``batch`` at the image's original size (validation, evaluate-model,
    infer and the demo all predict through here)."""
    out, instances = predict_image_instances(model, batch, postprocessor, seed=seed)
    return [image_prediction(inst, token_map, sample)
            for inst, token_map, sample in zip(instances, out.token_maps, batch.samples)]


class ImagePredictor:
    """A trained 2D model with its settings: predict a split, evaluate it, or predict one image file.

    Args:
        settings: the run's settings (from the checkpoint's stored config).
        model: the ``InstanceSegmentor2D`` (weights loaded), on its device.
        step: the checkpoint's step (for messages).
    """

    def __init__(self, settings: ImageRunSettings, model: InstanceSegmentor2D, *, step: Optional[int] = None) -> None:
        self.settings = settings
        self.model = model.eval()
        self.step = step
        self.postprocessor = build_postprocessor(settings.loss)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, overrides: Sequence[str] = (), *,
                        device: str = "auto") -> "ImagePredictor":
        """Load a checkpoint (``weights_only``) of a 2D run and build its model from the stored config."""
        payload = load_checkpoint(path)
        cfg = apply_overrides(load_config_yaml(payload["config"]), overrides)
        if not is_image_config(cfg):
            raise ConfigError(f"{path}: not a checkpoint of an image model (its config has no data.modality: image)")
        settings = ImageRunSettings.from_config(cfg)
        model = load_model_weights(build_image_model(settings), payload, path, device=device)
        return cls(settings, model, step=int(payload["step"]))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def class_names(self) -> list[str]:
        """The model's class names (stored in the run config), or "class <i>" when unknown."""
        names = self.settings.data.class_names
        return list(names) if names else [f"class {i}" for i in range(self.settings.model.num_classes)]

    def dataset(self, split: str, *, limit: Optional[int] = None) -> CocoInstanceDataset:
        """The evaluation form (resize only) of ``split``."""
        return make_image_dataset(self.settings.data, split, train=False, seed=0, limit=limit)

    def predict_dataset(self, dataset: CocoInstanceDataset, *, batch_size: int = 4) -> list[EncodedPrediction]:
        """Predictions of every image of ``dataset``, in its order (masks as compressed RLE)."""
        predictions: list[EncodedPrediction] = []
        for start in range(0, len(dataset), batch_size):
            batch = collate_images([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            predictions += [encode_prediction(p) for p in predict_images(
                self.model, batch.to(self.device), self.postprocessor, seed=self.settings.eval.seed)]
        return predictions

    def evaluate(self, dataset: CocoInstanceDataset, predictions: Sequence[AnyPrediction]) -> CocoResult:
        """COCO segm AP of ``predictions`` against the dataset's annotations."""
        return evaluate_coco(dataset.coco, list(predictions), dataset.class_to_category_id)

    def predict_file(self, path: str | os.PathLike) -> tuple[ImagePrediction, Tensor]:
        """Instances of one image file (any size; resized as in evaluation, masks at the file's size).

        Returns (prediction with ``image_id`` 0, the image float [3, H0, W0] in [0, 1])."""
        path = Path(path)
        pixels = torch.from_numpy(read_image(path)).permute(2, 0, 1).contiguous()
        h0, w0 = int(pixels.shape[1]), int(pixels.shape[2])
        item = eval_transform(AnnotatedImage(image=pixels, masks=torch.zeros(0, h0, w0, dtype=torch.bool),
                                             ignore=torch.zeros(h0, w0, dtype=torch.bool)),
                              image_size=self.settings.data.image_size)
        superpixels = None
        settings = superpixel_settings(self.settings.data)
        if settings is not None:
            superpixels = torch.from_numpy(image_superpixels(item.image.permute(1, 2, 0).numpy(), settings=settings))
        sample = ImageSample(image_id=0, file_name=path.name, image=item.image, masks=item.masks,
                             classes=torch.zeros(0, dtype=torch.long), ignore=item.ignore, superpixels=superpixels,
                             original_size=(h0, w0), valid_size=item.size)
        batch = collate_images([sample]).to(self.device)
        prediction = predict_images(self.model, batch, self.postprocessor, seed=self.settings.eval.seed)[0]
        return prediction, pixels
