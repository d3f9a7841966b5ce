"""Benchmark submission: writer (zip or folder) and the pre-upload validator."""
from pointformer.export.submission import MASK_DIR, check_predictions, write_prediction_folder, write_submission
from pointformer.export.validate import ValidationReport, validate_submission

__all__ = [
    "MASK_DIR", "ValidationReport", "check_predictions", "validate_submission", "write_prediction_folder",
    "write_submission",
]
