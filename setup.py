"""pointformer: 3D point-cloud instance segmentation on sparse convolutions, trained with the Influencer Loss."""
from setuptools import find_packages, setup

setup(
    name="pointformer",
    version="0.1.0",
    description="Mask3D/SPFormer-style 3D instance segmentation trained with the Influencer Loss",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    # The Hydra tree lives at the repository root (configs/) and is installed as package data under
    # pointformer/configs, so an installed `pointformer train` composes it from any directory.
    packages=find_packages(include=["pointformer", "pointformer.*"]) + ["pointformer.configs"],
    package_dir={"pointformer.configs": "configs"},
    package_data={"pointformer.configs": ["*.yaml", "*/*.yaml"]},
    # torch is installed before this package by the Makefile (CPU wheel on CPU machines, the user's
    # CUDA build kept on GPU machines); a range here never replaces an installed torch.
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "scipy>=1.10",
        "plyfile>=1.0",
        "hydra-core>=1.3",
        "omegaconf>=2.3",
        "tqdm>=4.60",
        "tensorboard>=2.12",
        "pycocotools>=2.0.6",
        "pillow>=9.0",  # image files of the 2D branch (docs/image.md); also a dependency of matplotlib
        "matplotlib>=3.7",
        "numba>=0.58",  # the mesh segmentator's union-find loop (see docs/data.md)
        "laspy[lazrs]>=2.4",  # LAS/LAZ scans for `pointformer infer` (lazrs: LAZ without a separate tool)
    ],
    extras_require={
        "vis": ["open3d-cpu>=0.18; platform_system=='Linux' and platform_machine=='x86_64'"],
        "vis-gpu": ["open3d>=0.18"],
        "dev": ["pytest>=7.4", "ruff>=0.6"],
    },
    entry_points={"console_scripts": ["pointformer=pointformer.cli:main"]},
)
