"""File formats and writing: raw datasets (ScanNet, PLY), the preprocessed scene contract, GT files,
checkpoints, and the one atomic writer (``pointformer.io.atomic``)."""
