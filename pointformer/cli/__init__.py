"""`pointformer <command> ...` — every command of the package, in one place.

One module per command group holds the argument parsing and calls into the library; nothing below
this package parses command lines. Every command is a ``(argv: list[str]) -> int`` function, imported
lazily so that ``pointformer --help`` is instant and a command's heavy imports are paid only when it runs.
"""
from __future__ import annotations

import importlib
import sys

# command -> (module of this package, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("synth", "main", "generate synthetic raw-format scenes (ScanNet)"),
    "preprocess": ("preprocess", "preprocess_main", "raw dataset -> preprocessed scenes (scannet)"),
    "superpoints": ("preprocess", "superpoints_main", "segmentator: MESH.ply or a cloud -> OUT.segs.json"),
    "evaluate": ("evaluate", "evaluate_main", "ScanNet-protocol AP of prediction files against GT files"),
    "validate-submission": ("submission", "validate_main", "check a benchmark submission zip before upload"),
    "train": ("train", "main", "train a model (Hydra overrides)"),
    "evaluate-model": ("evaluate", "evaluate_model_main", "evaluate a checkpoint on the validation split"),
    "export": ("submission", "export_main", "run a checkpoint on the test split and write a submission zip"),
    "infer": ("infer", "main", "predict instances on one scan (.ply)"),
    "show": ("show", "main", "GT and prediction side by side in matching colours (PNG, PLY, window)"),
    "demo": ("demo", "main", "end-to-end demo on synthetic ScanNet-format data"),
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
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as exc:
        # Only a missing *optional* dependency is reported this way; a missing pointformer module is a bug.
        if exc.name and not exc.name.startswith("pointformer"):
            print(f"pointformer {name}: needs the package {exc.name!r}, which is not installed", file=sys.stderr)
            return 2
        raise
    return int(getattr(module, func_name)(rest) or 0)
