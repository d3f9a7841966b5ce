"""The runtime: trainer and hooks (AdamW + OneCycle, AMP, DDP, checkpoints, exact resume), the training
composition root (``run``), the task, run folders' checkpoints, and the flows behind the export / infer /
demo commands (their command lines are in ``pointformer.cli``; prediction is ``pointformer.inference``).
See docs/training.md.

Submodules are imported on use (``pointformer.engine.trainer``, ``.run``, ...) so that importing the
package stays cheap.
"""
