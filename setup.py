#!/usr/bin/env python
"""atto-detectron: AttoNets (Wong et al.) as Detectron2 backbones, and Atto-MaskRCNN.

Detectron2 is deliberately not in ``install_requires``: pip cannot build it from the
registry, and people who already have their own Detectron2 build must be able to
install this plugin on top of it. Neither is OpenCV: Detectron2 environments bring
``opencv-python`` or ``opencv-python-headless``, and requiring one of them would install
a second ``cv2`` next to the other; only the synthetic-data generators need it.
``make test`` / ``make demo`` install the locked stack (``requirements/lock.txt``, which
pins the compiled ``sal-detectron2`` wheel and ``opencv-python-headless``).
"""

import os
import re
import shutil

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def get_model_zoo_configs():
    """
    The package data of ``atto_detectron.model_zoo``: the repository's top-level
    ``configs/`` folder, which the package gets as ``atto_detectron/model_zoo/configs``,
    as in Detectron2's setup.py: a link to ``configs/`` made at build time (a copy where
    links fail), ignored by git. An editable install reads ``configs/`` through it.
    """
    source = os.path.join(ROOT, "configs")
    destination = os.path.join(ROOT, "atto_detectron", "model_zoo", "configs")
    # Without configs/ (e.g. building from a tree that holds only the package), keep
    # what the package already has.
    if os.path.isdir(source):
        if os.path.islink(destination):
            os.unlink(destination)
        elif os.path.isdir(destination):
            shutil.rmtree(destination)
        try:
            os.symlink(os.path.relpath(source, os.path.dirname(destination)), destination)
        except OSError:
            shutil.copytree(source, destination)
    return ["configs/**/*.yaml", "configs/**/*.py"]


def get_version() -> str:
    """``__version__`` of atto_detectron/__init__.py, the one place the version is written."""
    with open(os.path.join(ROOT, "atto_detectron", "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.MULTILINE).group(1)


setup(
    name="atto-detectron",
    version=get_version(),
    description="AttoNet backbones and Atto-MaskRCNN for Detectron2",
    license="Apache-2.0",
    long_description=__doc__,
    # The locked stack is Python 3.10; the code needs 3.10 (dataclasses, typing) and
    # torch 2.2 (optimizer step hooks, torch.optim.swa_utils.get_ema_multi_avg_fn).
    python_requires=">=3.10",
    packages=find_packages(include=["atto_detectron", "atto_detectron.*"]),
    package_data={"atto_detectron.model_zoo": get_model_zoo_configs()},
    install_requires=[
        "torch>=2.2",
        "torchvision>=0.17",
        "numpy<2",  # Detectron2's own pin
        "fvcore",
        "pycocotools>=2.0.2",
        "scipy",  # intervals over seeds; SBD's .mat files
        "tqdm",
        "matplotlib",
        "Pillow",
        "PyYAML",
    ],
    extras_require={"test": ["pytest"]},
    # Train and evaluate, draw, export from an installed package (the repository's
    # tools/*.py run the same modules).
    entry_points={
        "console_scripts": [
            "atto-train-net = atto_detectron.tools.train_net:cli",
            "atto-demo = atto_detectron.tools.demo:cli",
            "atto-export-model = atto_detectron.tools.export_model:cli",
        ]
    },
)
