#!/usr/bin/env python
"""atto-detectron: AttoNets (Wong et al.) as Detectron2 backbones, and Atto-MaskRCNN.

Detectron2 itself is deliberately not in ``install_requires``: pip cannot build it from
the registry, and people who already have their own Detectron2 build must be able to
install this plugin on top of it. ``make test`` / ``make demo`` install the locked stack
(``requirements/lock.txt``, which pins the compiled ``sal-detectron2`` wheel).
"""

from setuptools import find_packages, setup

setup(
    name="atto-detectron",
    version="0.1.0",
    description="AttoNet backbones and Atto-MaskRCNN for Detectron2",
    long_description=__doc__,
    python_requires=">=3.8",
    packages=find_packages(include=["atto_detectron", "atto_detectron.*"]),
    install_requires=[
        "torch>=1.10",
        "torchvision",
        "fvcore",
        "pycocotools>=2.0.2",
        "opencv-python-headless",
        "tqdm",
        "matplotlib",
        "PyYAML",
    ],
    extras_require={"test": ["pytest"]},
)
