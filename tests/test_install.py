"""
A clean install: ``pip install .`` of a copy of the repository into a fresh virtual
environment, then the package used from there, from another folder: the installed
package (not the source tree) imports, ships its configs, builds and runs a model of
the zoo, and leaves one OpenCV in an environment that has opencv-python.

The fresh environment does not download the locked torch/Detectron2 stack (GBs): it sees
the project environment's site-packages through a ``.pth`` file, minus that
environment's OpenCV (opencv-python-headless) and atto-detectron. It gets
opencv-python, a Detectron2 user's usual OpenCV, in its own site-packages, from a wheel
downloaded once into WHEEL_CACHE; after that the test runs offline.
"""

import fnmatch
import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from .helpers import REPO_ROOT

pytestmark = pytest.mark.slow

# The OpenCV that the fresh environment installs: 4.11 is the last line that works with
# the lock's numpy 1.x.
OPENCV = "opencv-python==4.11.0.86"
OPENCV_WHEELS = "opencv_python-4.11.0.86-*.whl"
# tools/ensure_env.sh's cache folder.
WHEEL_CACHE = os.path.join(
    os.environ.get("ATTO_ENV_CACHE")
    or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "atto-detectron"
    ),
    "wheels",
)

# What the fresh environments must not see in the project environment: its
# atto-detectron (an editable install of the checkout; .pth files are not read from an
# appended folder anyway) and, where asked, its OpenCV.
HIDDEN_PACKAGES = ("atto_detectron*", "__editable__*", "*.pth")
HIDDEN_OPENCV = ("cv2", "opencv_python*")

# The parts of the checkout that are not the repository's files.
NOT_COPIED = {".git", ".venv", "output", "datasets", "build", "dist"}

CHECK_INSTALLED = r"""
import json, os
from importlib import metadata

import cv2
import torch

import atto_detectron
from atto_detectron import model_zoo

model = model_zoo.get("synth/atto_maskrcnn_synth.yaml")
torch.manual_seed(0)
with torch.no_grad():
    instances = model([{"image": torch.randint(0, 256, (3, 96, 128)).float()}])[0]["instances"]
lazy_model = model_zoo.get("lazy/atto_maskrcnn_synth.py")
names = {d.metadata["Name"].lower() for d in metadata.distributions()}
print(json.dumps({
    "package": os.path.dirname(atto_detectron.__file__),
    "configs": [model_zoo.get_config_file(name) for name in model_zoo.list_configs()],
    "model": [type(model).__name__, str(next(model.parameters()).device), model.training],
    "same_model": [n for n, _ in model.named_parameters()]
    == [n for n, _ in lazy_model.named_parameters()],
    "instances": [list(instances.image_size), sorted(instances.get_fields())],
    "opencv": sorted(n for n in names if n.startswith("opencv")),
    "cv2": cv2.__file__,
    "requires": metadata.requires("atto-detectron"),
}))
"""

CHECK_EDITABLE = r"""
import json, os
import atto_detectron
from atto_detectron import model_zoo
print(json.dumps({
    "package": os.path.dirname(atto_detectron.__file__),
    "config": model_zoo.get_config_file("lazy/atto_maskrcnn_voc.py"),
}))
"""


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert (
        result.returncode == 0
    ), f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout


def _environment():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _opencv_wheel_cache():
    """WHEEL_CACHE, holding the opencv-python wheel (downloaded the first time)."""
    if not glob.glob(os.path.join(WHEEL_CACHE, OPENCV_WHEELS)):
        os.makedirs(WHEEL_CACHE, exist_ok=True)
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            + ["--dest", WHEEL_CACHE, OPENCV],
            capture_output=True,
            text=True,
            env=_environment(),
        )
        if download.returncode != 0:
            pytest.skip(
                f"{OPENCV} is not in {WHEEL_CACHE} and could not be downloaded (the first "
                f"run needs the package registry): {download.stderr.strip()[-500:]}"
            )
    return WHEEL_CACHE


def _fresh_venv(folder, hidden):
    """
    A new virtual environment that also imports the project environment's packages,
    except those matching ``hidden``. Returns its python.
    """
    _run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")])
    python = str(folder / "venv" / "bin" / "python")
    site_packages = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    # The project environment, as links to its entries but the hidden ones: appended to
    # sys.path after the fresh environment's own site-packages.
    locked = folder / "locked_env"
    locked.mkdir()
    # Its own site-packages, and the shared locked packages it sees (tools/ensure_env.sh).
    sources = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    sources |= {p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)}
    for source in sorted(sources):
        for name in os.listdir(source):
            if not any(fnmatch.fnmatch(name, pattern) for pattern in hidden):
                if not (locked / name).exists():
                    os.symlink(os.path.join(source, name), locked / name)
    with open(os.path.join(site_packages.strip(), "locked_env.pth"), "w") as f:
        f.write(f"{locked}\n")
    return python


def _copy_repository(destination):
    def ignore(folder, names):
        ignored = set(shutil.ignore_patterns("__pycache__", "*.egg-info", ".*cache")(folder, names))
        if os.path.samefile(folder, REPO_ROOT):
            ignored |= NOT_COPIED & set(names)
        return ignored

    shutil.copytree(REPO_ROOT, destination, symlinks=True, ignore=ignore)
    return str(destination)


def _inside(path, folder):
    return os.path.commonpath(
        [os.path.realpath(path), os.path.realpath(folder)]
    ) == os.path.realpath(folder)


def test_pip_install_ships_the_configs_and_needs_no_particular_opencv(tmp_path):
    wheels = _opencv_wheel_cache()
    python = _fresh_venv(tmp_path, HIDDEN_PACKAGES + HIDDEN_OPENCV)
    env = _environment()
    offline = ["--no-index", "--find-links", wheels]
    _run([python, "-m", "pip", "install", *offline, OPENCV], env=env, cwd=tmp_path)
    # Dependencies resolve against the project environment and the wheel cache only: a
    # requirement on opencv-python-headless would fail here (or install a second cv2).
    source = _copy_repository(tmp_path / "repository")
    _run(
        [python, "-m", "pip", "install", "--no-build-isolation", *offline, source],
        env=env,
        cwd=tmp_path,
    )
    shutil.rmtree(source)  # only the installed package is left to use

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    found = json.loads(_run([python, "-c", CHECK_INSTALLED], env=env, cwd=workdir).splitlines()[-1])

    site_packages = str(tmp_path / "venv")
    package = found["package"]
    assert _inside(package, site_packages)
    configs = os.path.join(package, "model_zoo", "configs")
    assert len(found["configs"]) >= 10
    for path in found["configs"]:
        assert _inside(path, configs), path  # package data: files, not links to a checkout
    assert any(
        path.endswith(os.path.join("lazy", "atto_maskrcnn_voc.py")) for path in found["configs"]
    )
    assert found["model"] == ["GeneralizedRCNNSeparablePaste", "cpu", False]
    assert found["same_model"]
    assert found["instances"][0] == [96, 128]
    assert {"pred_boxes", "scores", "pred_classes", "pred_masks"} <= set(found["instances"][1])
    assert found["opencv"] == ["opencv-python"]
    assert _inside(found["cv2"], site_packages)
    assert not [r for r in found["requires"] if r.lower().startswith("opencv")]

    # The tools run from the installed package, outside any checkout: draw predictions
    # with the module and with its command, and train + evaluate one iteration.
    config = os.path.join(configs, "synth", "atto_maskrcnn_synth.yaml")
    image = workdir / "image.png"
    _run(
        [
            python,
            "-c",
            f"import numpy, cv2; "
            f"cv2.imwrite({str(image)!r}, numpy.full((96, 128, 3), 90, numpy.uint8))",
        ],
        env=env,
        cwd=workdir,
    )
    draw = ["--config-file", config, "--allow-random-weights", "--input", str(image)]
    opts = ["--opts", "MODEL.ATTONET.VARIANT", "D", "MODEL.DEVICE", "cpu"]
    _run(
        [python, "-m", "atto_detectron.tools.demo", *draw, "--output", "a.png", *opts],
        env=env,
        cwd=workdir,
    )
    command = os.path.join(os.path.dirname(python), "atto-demo")
    _run([command, *draw, "--output", "b.png", *opts], env=env, cwd=workdir)
    assert (workdir / "a.png").is_file() and (workdir / "b.png").is_file()
    help_text = _run(
        [os.path.join(os.path.dirname(python), "atto-train-net"), "--help"], env=env, cwd=workdir
    )
    assert "--config-file" in help_text and "--num-gpus" in help_text
    assert "--format" in _run(
        [python, "-m", "atto_detectron.tools.export_model", "--help"], env=env, cwd=workdir
    )


def test_editable_install_reads_the_checkouts_configs(tmp_path):
    # The development install (tools/ensure_env.sh: pip install -e, no build isolation).
    python = _fresh_venv(tmp_path, HIDDEN_PACKAGES)
    env = _environment()
    source = _copy_repository(tmp_path / "repository")
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-build-isolation",
            "--no-index",
            "--no-deps",
            "-e",
            source,
        ],
        env=env,
        cwd=tmp_path,
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    found = json.loads(_run([python, "-c", CHECK_EDITABLE], env=env, cwd=workdir).splitlines()[-1])
    assert os.path.realpath(found["package"]) == os.path.realpath(
        os.path.join(source, "atto_detectron")
    )
    # Through setup.py's link to the checkout's configs/: edits show at once.
    assert os.path.realpath(found["config"]) == os.path.realpath(
        os.path.join(source, "configs", "lazy", "atto_maskrcnn_voc.py")
    )
    link = os.path.join(source, "atto_detectron", "model_zoo", "configs")
    assert os.path.islink(link)
    # ... which git ignores (a generated file).
    if shutil.which("git") and os.path.isdir(os.path.join(REPO_ROOT, ".git")):
        ignored = subprocess.run(
            [
                "git",
                "-C",
                REPO_ROOT,
                "check-ignore",
                "--no-index",
                "-q",
                os.path.relpath(link, source),
            ]
        )
        assert ignored.returncode == 0


def test_two_checkouts_each_get_their_own_package_over_the_shared_environment(tmp_path):
    # tools/ensure_env.sh: the locked packages are shared per lock file; each checkout's
    # .venv holds its own editable install, so that setting up B leaves A pointing at A.
    checkouts = [_copy_repository(tmp_path / name) for name in ("a", "b")]
    pythons = []
    for checkout in checkouts:
        env_dir = _run(["bash", os.path.join(checkout, "tools", "ensure_env.sh")], cwd=checkout)
        assert os.path.realpath(env_dir.strip().splitlines()[-1]) == os.path.realpath(
            os.path.join(checkout, ".venv")
        )
        pythons.append(os.path.join(checkout, ".venv", "bin", "python"))
    code = "import atto_detectron, detectron2; print(atto_detectron.__file__)"
    for checkout, python in zip(checkouts, pythons):
        found = _run([python, "-c", code], cwd=str(tmp_path)).strip().splitlines()[-1]
        assert os.path.realpath(found) == os.path.realpath(
            os.path.join(checkout, "atto_detectron", "__init__.py")
        )
    # The shared environment's command-line tools work from a checkout's.
    assert "ruff" in _run([pythons[0], "-m", "ruff", "--version"], cwd=str(tmp_path))
