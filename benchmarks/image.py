"""Step time and peak memory of the 2D model per image size and token kind (pixel / superpixel).

One training step = forward (backbone, pixel decoder, tokens, shared QueryDecoder) + the shared
criterion + backward + AdamW step, on a batch of synthetic shapes images (``pointformer.image.synthetic``)
at the given size, the ``image_tiny`` model and the Influencer Loss. Every (size, tokens) setting runs in
a fresh subprocess, so the peak resident memory (CPU: ``ru_maxrss``; CUDA: ``max_memory_allocated``)
is that setting's alone. Superpixels are computed by the dataset (not part of the step time; their
time per image is reported separately as ``superpixel_s_per_image``).

    .venv/bin/python benchmarks/image.py                        # sizes 128 256 512, pixel and superpixel
    .venv/bin/python benchmarks/image.py --sizes 128 --steps 3 --tokens pixel

Prints one JSON line per setting (fields: size, tokens, batch, tokens_per_image, s_per_step, peak_mb, ...).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence


def measure(size: int, tokens: str, *, batch: int, steps: int, warmup: int, device: str, data: Path) -> dict:
    """Time ``steps`` training steps (after ``warmup``) of one setting in this process."""
    import resource

    import torch

    from pointformer.config import compose_config
    from pointformer.image.build import build_image_model, make_image_dataset
    from pointformer.image.predictor import model_inputs
    from pointformer.image.settings import ImageRunSettings
    from pointformer.image.task import ImageSegmentationTask

    torch.manual_seed(0)
    cfg = compose_config(["experiment=demo_2d", f"data.root={data}", f"data.image_size={size}",
                          f"data.tokens={tokens}", "data.scale_jitter=null", "data.flip=false"])
    settings = ImageRunSettings.from_config(cfg)
    dataset = make_image_dataset(settings.data, "train", train=True, seed=0)
    dataset[0]  # warm-up: the first superpixel call compiles the numba kernels
    start = time.perf_counter()
    samples = [dataset[i % len(dataset)] for i in range(batch)]
    prepare = (time.perf_counter() - start) / batch
    batches = [dataset.collate_fn(samples).to(device)]
    model = build_image_model(settings).to(device)
    task = ImageSegmentationTask.from_settings(settings, coco_gt=None,
                                               class_to_category_id=dataset.class_to_category_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    times = []
    for i in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = task.training_loss(model, batches[0])
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    with torch.no_grad():
        out = model(*model_inputs(batches[0]))
    record = {"size": size, "tokens": tokens, "batch": batch, "device": device, "steps": steps,
              "tokens_per_image": float(out.tokens.counts.float().mean()),
              "s_per_step": sum(times) / len(times), "s_per_step_min": min(times),
              "peak_mb": (torch.cuda.max_memory_allocated() / 2 ** 20 if cuda
                          else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0),
              "rss_before_steps_mb": None if cuda else rss_before,
              "peak_kind": "cuda_max_allocated" if cuda else "process_max_rss",
              ("superpixel_s_per_image" if tokens == "superpixel" else "load_s_per_image"): prepare,
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--tokens", nargs="+", default=["pixel", "superpixel"], choices=["pixel", "superpixel"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=None, help="a shapes2d folder (default: generated in a temp dir)")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1], batch=args.batch, steps=args.steps,
                                 warmup=args.warmup, device=args.device, data=args.data)), flush=True)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from pointformer.image.synthetic import generate_shapes2d

            data = Path(tmp) / "shapes"
            generate_shapes2d(data, num_images=max(args.batch, 4), num_val_images=1, seed=0, size=max(args.sizes))
        for size in args.sizes:
            for tokens in args.tokens:
                command = [sys.executable, __file__, "--one", str(size), tokens, "--batch", str(args.batch),
                           "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
                           "--threads", str(args.threads), "--data", str(data)]
                done = subprocess.run(command, capture_output=True, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                if done.returncode != 0:
                    print(json.dumps({"size": size, "tokens": tokens, "error": done.stderr.strip().splitlines()[-1:]}))
                    continue
                print(done.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
