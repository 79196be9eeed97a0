"""The package's install metadata and its behaviour without Detectron2."""

import subprocess
import sys
from importlib import metadata

from .conftest import REPO_ROOT


def test_install_requires_leaves_detectron2_to_the_user():
    requires = [r.split(";")[0].strip().lower() for r in metadata.requires("atto-detectron")]
    names = {r.split("=")[0].split("<")[0].split(">")[0].split("[")[0].strip() for r in requires}
    assert {
        "torch",
        "fvcore",
        "pycocotools",
        "opencv-python-headless",
        "tqdm",
        "matplotlib",
    } <= names
    assert not any("detectron2" in name for name in names)


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
