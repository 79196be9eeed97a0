"""The package's install metadata and its behaviour without Detectron2."""

import subprocess
import sys
from importlib import metadata

import pytest

from .helpers import REPO_ROOT


def test_install_requires_leaves_detectron2_and_opencv_to_the_user():
    requires = [r.split(";")[0].strip().lower() for r in metadata.requires("atto-detectron")]
    names = {r.split("=")[0].split("<")[0].split(">")[0].split("[")[0].strip() for r in requires}
    assert {"torch", "fvcore", "pycocotools", "tqdm", "matplotlib"} <= names
    assert not any("detectron2" in name for name in names)
    # An existing Detectron2 environment has its own OpenCV build.
    assert not any("opencv" in name for name in names)


@pytest.mark.slow
def test_import_without_opencv():
    # A None entry in sys.modules makes `import cv2` raise ImportError.
    code = (
        "import sys; sys.modules['cv2'] = None; import atto_detectron; "
        "from atto_detectron import model_zoo; print(len(model_zoo.list_configs()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip().splitlines()[-1]) > 10


def test_import_without_detectron2_says_how_to_get_it():
    # A None entry in sys.modules makes `import detectron2` raise ImportError.
    code = "import sys; sys.modules['detectron2'] = None; import atto_detectron"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "atto_detectron needs Detectron2" in result.stderr
    assert "requirements/lock.txt" in result.stderr and "make test" in result.stderr
