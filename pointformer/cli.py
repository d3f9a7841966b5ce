"""`pointformer <command> ...` — one entry point; each command lives in the module that owns it.

Every command is a ``main(argv: list[str]) -> int`` function, imported lazily so that
``pointformer --help`` is instant and a command's heavy imports are paid only when it runs.
"""
from __future__ import annotations

import importlib
import sys

# command -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("pointformer.synthetic.cli", "main", "generate synthetic raw-format scenes (ScanNet)"),
    "preprocess": ("pointformer.preprocess.cli", "main", "raw dataset -> preprocessed scenes (scannet)"),
    "superpoints": ("pointformer.preprocess.segmentator", "main", "mesh segmentator: MESH.ply -> OUT.segs.json"),
    "evaluate": ("pointformer.evaluation.cli", "main", "ScanNet-protocol AP of prediction files against GT files"),
    "validate-submission": ("pointformer.export.validate", "main", "check a benchmark submission zip before upload"),
    "train": ("pointformer.engine.cli", "train_main", "train a model (Hydra overrides)"),
    "evaluate-model": ("pointformer.engine.cli", "evaluate_main", "evaluate a checkpoint on the validation split"),
    "export": ("pointformer.engine.cli", "export_main", "run a checkpoint on the test split and write a submission zip"),
    "infer": ("pointformer.engine.cli", "infer_main", "predict instances on one scan (.ply)"),
    "demo": ("pointformer.engine.demo", "main", "end-to-end demo on synthetic ScanNet-format data"),
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: pointformer <command> [args...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`pointformer <command> --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from pointformer import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"pointformer: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing *optional* dependency is reported this way; a missing pointformer module is a bug.
        if exc.name and not exc.name.startswith("pointformer"):
            print(f"pointformer {name}: needs the package {exc.name!r}, which is not installed", file=sys.stderr)
            return 2
        raise
    return int(getattr(module, func_name)(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
