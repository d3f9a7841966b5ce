#!/usr/bin/env python
"""`python eval/evaluate.py PRED_DIR GT_DIR [--dataset scannet|s3dis] [--csv OUT.csv]`.

The same as `pointformer evaluate`."""
import sys

from pointformer.cli.evaluate import evaluate_main as main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
