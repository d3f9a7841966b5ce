"""Raw datasets -> preprocessed scenes (the contract of ``pointformer.io.scene``).

Modules: ``scannet`` (ScanNet v2 release -> scenes, GT files, manifests; parallel and resumable),
``segmentator`` (mesh superpoints, the ScanNet Segmentator algorithm), ``cli`` (``pointformer
preprocess``). Submodules are imported on demand: the segmentator loads numba.
"""
