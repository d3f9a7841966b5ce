"""The 2D image branch: the shared ``QueryDecoder``, losses and trainer on images (docs/image.md).

One vertical slice that imports no 3D module (``tests/image/test_isolation.py``), and that no 3D
module imports. Modules (import them directly; nothing is imported here):

    coco          COCO-format annotations (polygons, RLE, crowd) -> masks; category id <-> class
    transforms    flip, scale jitter, crop, resize of an image with its masks
    dataset       CocoInstanceDataset, ImageSample, ImageBatch, collation
    superpixels   graph segmentation on the image grid (the 2D counterpart of superpoints)
    synthetic     ``pointformer synth shapes2d``: a COCO-format set of textured shapes
    evaluation    COCO segm AP / AP50 / AP75 through pycocotools' COCOeval; results JSON (RLE)
    backbone      a small ResNet trained from scratch
    pixel_decoder FPN-style per-pixel features
    tokens        pixel tokens at a stride or superpixel tokens; per-token targets
    model         InstanceSegmentor2D (backbone -> pixel decoder -> tokens -> QueryDecoder)
    settings, build, task, run, predictor   typed settings, builders, the Task, the composition root,
                  prediction (the one forward + postprocessing), checkpoints -> predictions
    overlay, commands, demo   overlay PNGs; the flows of evaluate-model / infer / ``demo 2d``
"""
