"""tools/demo.py: drawings of predictions, odd image modes, bad inputs."""

import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

from .conftest import CONFIGS, REPO_ROOT, SYNTH_DATASETS

CONFIG = os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml")
# Random weights: every score is about 1/21, so a threshold of 0 draws detections and a
# threshold of 1 draws none.
OPTS = ["MODEL.ATTONET.VARIANT", "D", "TEST.DETECTIONS_PER_IMAGE", "3", "MODEL.DEVICE", "cpu"]


def _load_demo():
    spec = importlib.util.spec_from_file_location(
        "demo", os.path.join(REPO_ROOT, "tools", "demo.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()


def _image(path, mode="RGB", size=(200, 150)):
    # A smooth gradient: drawings show up against it, resampling does not.
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    array = np.stack([x * 255 // size[0], y * 255 // size[1], np.full_like(x, 90)], axis=-1)
    array = array.astype(np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return path


def _run(*args):
    demo.main(["--config-file", CONFIG, *args, "--opts", *OPTS])


def test_drawing_differs_from_the_input_where_detections_are(tmp_path, monkeypatch):
    image_path = _image(tmp_path / "in.png")
    out_path = tmp_path / "out.png"
    drawn_boxes = []
    original = demo.VisualizationPredictor.__call__

    def record(self, image):
        predictions, drawn = original(self, image)
        drawn_boxes.extend(predictions["instances"].pred_boxes.tensor.tolist())
        return predictions, drawn

    monkeypatch.setattr(demo.VisualizationPredictor, "__call__", record)
    _run("--input", str(image_path), "--output", str(out_path), "--confidence-threshold", "0")
    original_pixels = np.asarray(Image.open(image_path).convert("RGB")).astype(int)
    drawn = np.asarray(Image.open(out_path).convert("RGB")).astype(int)
    assert drawn.shape == original_pixels.shape
    assert len(drawn_boxes) == 3
    x0, y0, x1, y1 = (int(round(v)) for v in drawn_boxes[0])
    # The box outline itself is drawn over the image.
    edge = np.abs(drawn[y0 : y1 + 1, x0 : x0 + 2] - original_pixels[y0 : y1 + 1, x0 : x0 + 2])
    assert edge.mean() > 5


def test_no_detections_leaves_the_image_unchanged(tmp_path):
    image_path = _image(tmp_path / "in.png")
    out_path = tmp_path / "out.png"
    _run("--input", str(image_path), "--output", str(out_path), "--confidence-threshold", "1.0")
    original_pixels = np.asarray(Image.open(image_path).convert("RGB")).astype(int)
    drawn = np.asarray(Image.open(out_path).convert("RGB")).astype(int)
    assert np.abs(drawn - original_pixels).mean() < 1.0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_rgba_and_palette_images(tmp_path, mode):
    image_path = _image(tmp_path / f"in_{mode}.png", mode=mode)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _run("--input", str(tmp_path), "--output", str(out_dir), "--confidence-threshold", "0")
    drawn = Image.open(out_dir / f"in_{mode}.png")
    assert drawn.size == Image.open(image_path).size and drawn.mode == "RGB"


def test_missing_input_names_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _run("--input", str(tmp_path / "nope.jpg"), "--output", str(tmp_path / "o.png"))
    assert "nope.jpg" in str(e.value) and "no image found" in str(e.value)


def test_unreadable_image_names_it(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(SystemExit) as e:
        _run("--input", str(bad), "--output", str(tmp_path / "o.png"))
    assert "broken.jpg" in str(e.value) and "not a readable image" in str(e.value)


def test_generated_voc_images_into_a_folder(synthetic_voc, tmp_path):
    # As `make demo` runs it: several dataset images, one drawing each, VOC class names.
    with open(os.path.join(synthetic_voc, "ImageSets", "Segmentation", "val.txt")) as f:
        names = f.read().split()[:2]
    inputs = [os.path.join(synthetic_voc, "JPEGImages", name + ".jpg") for name in names]
    out_dir = tmp_path / "drawn"
    demo.main(
        ["--config-file", CONFIG, "--input", *inputs, "--output", str(out_dir) + os.sep,
         "--confidence-threshold", "0", "--opts", *OPTS,
         "DATASETS.TEST", f"('{SYNTH_DATASETS['val']}',)"]
    )  # fmt: skip
    assert sorted(os.listdir(out_dir)) == sorted(name + ".png" for name in names)
    for name, path in zip(names, inputs):
        original = np.asarray(Image.open(path).convert("RGB")).astype(int)
        drawn = np.asarray(Image.open(out_dir / (name + ".png")).convert("RGB")).astype(int)
        assert drawn.shape == original.shape
        assert (np.abs(drawn - original).max(axis=-1) > 40).mean() > 0.001
