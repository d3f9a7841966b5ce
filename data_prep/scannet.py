"""Preprocess a ScanNet v2 release: ``python data_prep/scannet.py RAW_ROOT OUT_DIR [--workers N]``.

The same as ``pointformer preprocess scannet ...`` (see docs/data.md); the logic lives in
pointformer.preprocess.scannet.
"""
import sys
from pathlib import Path

try:
    from pointformer.cli.preprocess import preprocess_main as main
except ModuleNotFoundError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pointformer.cli.preprocess import preprocess_main as main

if __name__ == "__main__":
    sys.exit(main(["scannet", *sys.argv[1:]]))
