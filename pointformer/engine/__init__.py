"""Training engine: trainer (AdamW + OneCycle, AMP, DDP, checkpoints, exact resume), config
composition, and the train / evaluate-model / export / infer / demo commands. See docs/training.md.

Submodules are imported on use (``pointformer.engine.trainer``, ``.run``, ``.cli``, ...) so that
importing the package stays cheap.
"""
