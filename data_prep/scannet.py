"""Preprocess a ScanNet v2 release: ``python data_prep/scannet.py RAW_ROOT OUT_DIR [--workers N]``.

The same as ``pointformer preprocess scannet ...``; the logic lives in pointformer.preprocess.scannet.
"""
import sys

from pointformer.preprocess.cli import main

if __name__ == "__main__":
    sys.exit(main(["scannet", *sys.argv[1:]]))
