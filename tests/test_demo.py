"""tools/demo.py: drawings of predictions, odd image modes, bad inputs and outputs."""

import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.visualizer import ColorMode

from atto_detectron.config import load_config
from atto_detectron.tools import demo
from atto_detectron.visualization import VisualizationPredictor, load_image, output_paths

from .helpers import CONFIGS, SYNTH_DATASETS

# These small models and inputs gain nothing from a second thread (see one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml")
# Random weights: every score is about 1/21, so a threshold of 0 draws detections and a
# threshold of 1 draws none.
OPTS = ["MODEL.ATTONET.VARIANT", "D", "TEST.DETECTIONS_PER_IMAGE", "3", "MODEL.DEVICE", "cpu"]


def _image(path, mode="RGB", size=(200, 150)):
    # A smooth gradient: drawings show up against it, resampling does not.
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    array = np.stack([x * 255 // size[0], y * 255 // size[1], np.full_like(x, 90)], axis=-1)
    array = array.astype(np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return path


def _run(*args):
    demo.main(["--config-file", CONFIG, "--allow-random-weights", *args, "--opts", *OPTS])


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
        [
            "--config-file",
            CONFIG,
            "--allow-random-weights",
            "--input",
            *inputs,
            "--output",
            str(out_dir) + os.sep,
            "--confidence-threshold",
            "0",
            "--opts",
            *OPTS,
            "DATASETS.TEST",
            f"('{SYNTH_DATASETS['val']}',)",
        ]
    )
    assert sorted(os.listdir(out_dir)) == sorted(name + ".png" for name in names)
    for name, path in zip(names, inputs):
        original = np.asarray(Image.open(path).convert("RGB")).astype(int)
        drawn = np.asarray(Image.open(out_dir / (name + ".png")).convert("RGB")).astype(int)
        assert drawn.shape == original.shape
        assert (np.abs(drawn - original).max(axis=-1) > 40).mean() > 0.001


@pytest.fixture
def no_model(monkeypatch):
    """Makes building the model fail the test: errors must come before it."""

    def refuse(cfg, *args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(demo, "VisualizationPredictor", refuse)


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return str(path)


# Drawings never overwrite an input, nor each other.


def test_output_names_without_collisions_are_flat(tmp_path):
    inputs = [_touch(tmp_path / "in" / "x.jpg"), _touch(tmp_path / "in" / "y.png")]
    out = str(tmp_path / "out")
    assert output_paths(inputs, out) == [os.path.join(out, "x.png"), os.path.join(out, "y.png")]
    # One input and a file name: the file itself; with a trailing separator: a folder.
    assert output_paths(inputs[:1], str(tmp_path / "d.png")) == [str(tmp_path / "d.png")]
    assert output_paths(inputs[:1], out + os.sep) == [os.path.join(out, "x.png")]
    with pytest.raises(ValueError, match="is a file; draw 2 inputs into a folder"):
        output_paths(inputs, _touch(tmp_path / "file.png"))


def test_output_names_mirror_folders_when_stems_collide_across_folders(tmp_path):
    inputs = [
        _touch(tmp_path / "a" / "x.jpg"),
        _touch(tmp_path / "b" / "c" / "x.png"),
        _touch(tmp_path / "b" / "y.jpg"),
    ]
    out = str(tmp_path / "out")
    assert output_paths(inputs, out) == [
        os.path.join(out, "a", "x.png"),
        os.path.join(out, "b", "c", "x.png"),
        os.path.join(out, "b", "y.png"),
    ]


def test_output_names_keep_the_extension_when_stems_collide_in_a_folder(tmp_path):
    inputs = [_touch(tmp_path / "x.jpg"), _touch(tmp_path / "x.png"), _touch(tmp_path / "y.jpg")]
    out = str(tmp_path / "out")
    assert output_paths(inputs, out) == [
        os.path.join(out, "x.jpg.png"),
        os.path.join(out, "x.png.png"),
        os.path.join(out, "y.png"),
    ]
    # "x.jpg" keeps its extension and "x.jpg.png" has its own stem: the same name.
    with pytest.raises(ValueError, match=r"x\.jpg and .*x\.jpg\.png would both be drawn"):
        output_paths([*inputs[:2], _touch(tmp_path / "x.jpg.png")], out)


def test_an_output_that_is_an_input_is_refused(tmp_path):
    image = _touch(tmp_path / "in" / "x.png")
    with pytest.raises(ValueError, match="would overwrite the input"):
        output_paths([image], image)
    with pytest.raises(ValueError, match="would overwrite the input"):
        output_paths([image], str(tmp_path / "in"))
    # The same folder through a symbolic link and "..".
    os.symlink(tmp_path / "in", tmp_path / "link")
    with pytest.raises(ValueError, match="would overwrite the input"):
        output_paths([image], str(tmp_path / "link" / ".." / "link") + os.sep)
    # A .jpg input drawn next to itself is x.png, not the input.
    jpg = _touch(tmp_path / "j" / "x.jpg")
    assert output_paths([jpg], str(tmp_path / "j")) == [str(tmp_path / "j" / "x.png")]


def test_output_folder_equal_to_the_input_folder_stops_before_the_model(tmp_path, no_model):
    image_path = _image(tmp_path / "x.png")
    before = image_path.read_bytes()
    with pytest.raises(SystemExit) as e:
        _run("--input", str(tmp_path), "--output", str(tmp_path))
    assert str(e.value).startswith("error:") and "x.png" in str(e.value)
    assert "would overwrite the input" in str(e.value)
    assert image_path.read_bytes() == before


def test_colliding_names_are_each_drawn_from_their_own_input(tmp_path):
    colors = {"a/x.jpg": (230, 20, 20), "b/x.png": (20, 230, 20), "b/x.jpg": (20, 20, 230)}
    for name, color in colors.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (64, 48), color).save(tmp_path / name)
    out_dir = tmp_path / "out"
    _run(
        "--input",
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        "--output",
        str(out_dir),
        "--confidence-threshold",
        "1.0",
    )
    drawn = {"a/x.jpg": "a/x.png", "b/x.png": "b/x.png.png", "b/x.jpg": "b/x.jpg.png"}
    assert sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.png")) == sorted(
        drawn.values()
    )
    for name, out in drawn.items():
        mean = np.asarray(Image.open(out_dir / out).convert("RGB")).reshape(-1, 3).mean(0)
        assert np.abs(mean - colors[name]).max() < 5, (name, mean)


# 16-bit images.


def _gradient16(size=(40, 30)):
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    return (x * 65535 // (size[0] - 1)).astype(np.uint16) ^ (y * 37).astype(np.uint16)


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_png_keeps_its_values(tmp_path, channels):
    gray = _gradient16()
    array = gray if channels == 1 else np.stack([gray, 65535 - gray, gray // 3], axis=-1)
    path = str(tmp_path / "deep.png")
    cv2.imwrite(path, array)  # BGR, uint16
    assert cv2.imread(path, cv2.IMREAD_UNCHANGED).dtype == np.uint16
    image = load_image(path)
    assert image.dtype == np.uint8 and image.shape == (30, 40, 3)
    expected = (array >> 8).astype(np.uint8)
    if channels == 1:
        expected = np.repeat(expected[:, :, None], 3, axis=-1)
    np.testing.assert_array_equal(image, expected)
    assert image.min() == 0 and image.max() == 255


@pytest.mark.parametrize("scale, offset", [(1000, 0), (1, 0), (3, -40000)])
def test_32_bit_integer_grayscale_spans_0_to_255(tmp_path, scale, offset):
    # Values far beyond 16 bits, within them, and negative: never black, never white.
    gray = _gradient16().astype(np.int64) * scale + offset
    path = str(tmp_path / "deep.tif")
    Image.fromarray(gray.astype(np.int32)).save(path)
    assert Image.open(path).mode == "I"
    image = load_image(path)
    assert image.min() == 0 and image.max() == 255
    expected = np.rint((gray - gray.min()) * 255.0 / (gray.max() - gray.min()))
    np.testing.assert_array_equal(image[:, :, 0], expected.astype(np.uint8))


def test_float_images_map_0_to_1_or_their_range_and_refuse_all_nan(tmp_path):
    unit = (_gradient16() / 65535.0).astype(np.float32)
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    np.testing.assert_array_equal(
        load_image(str(tmp_path / "unit.tif"))[:, :, 0], np.rint(unit * 255.0).astype(np.uint8)
    )
    wide = unit * 5000 - 100
    wide[0, 0] = np.nan
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    image = load_image(str(tmp_path / "wide.tif"))
    assert image[0, 0, 0] == 0 and image.max() == 255
    Image.fromarray(np.full((4, 4), np.nan, np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match="nan.tif: a float image without one finite pixel"):
        load_image(str(tmp_path / "nan.tif"))


def test_16_bit_png_follows_exif_orientation_as_read_image(tmp_path):
    gray = _gradient16()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(gray).save(tmp_path / "deep.png", exif=exif)
    Image.fromarray((gray >> 8).astype(np.uint8)).save(tmp_path / "shallow.png", exif=exif)
    image = load_image(str(tmp_path / "deep.png"))
    assert image.shape == (40, 30, 3)
    np.testing.assert_array_equal(image, read_image(str(tmp_path / "shallow.png"), "BGR"))


def test_16_bit_png_drawing_is_not_white(tmp_path):
    # Smooth, as drawings resample a little; all white read as 16-bit would be 255.
    gray = np.repeat(np.linspace(0, 65535, 200).astype(np.uint16)[None], 150, axis=0)
    cv2.imwrite(str(tmp_path / "deep.png"), gray)
    out_path = tmp_path / "out.png"
    _run(
        "--input",
        str(tmp_path / "deep.png"),
        "--output",
        str(out_path),
        "--confidence-threshold",
        "1.0",
    )
    drawn = np.asarray(Image.open(out_path).convert("L")).astype(int)
    assert np.abs(drawn - (gray >> 8)).mean() < 1.0


# Videos.


def _video(path, frames=3, size=(64, 48)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 40 + 60 * i, np.uint8))
    writer.release()
    return str(path)


def _frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_video_into_a_missing_folder(tmp_path):
    video = _video(tmp_path / "clip.mp4")
    out_path = tmp_path / "new" / "sub" / "drawn.mp4"
    _run("--video-input", video, "--output", str(out_path), "--confidence-threshold", "1.0")
    frames = _frames(out_path)
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)
    # No detections: each frame is drawn as it was.
    for frame, original in zip(frames, _frames(video)):
        assert np.abs(frame.astype(int) - original).mean() < 3
    # Into a folder: named after the video.
    _run(
        "--video-input",
        video,
        "--output",
        str(tmp_path / "d") + os.sep,
        "--confidence-threshold",
        "1.0",
    )
    assert len(_frames(tmp_path / "d" / "clip.mp4")) == 3


def test_not_a_video_stops_before_the_model(tmp_path, no_model):
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    with pytest.raises(SystemExit) as e:
        _run("--video-input", str(text), "--output", str(tmp_path / "out.mp4"))
    assert str(e.value).startswith("error:") and "notes.txt" in str(e.value)
    assert "no frame could be decoded" in str(e.value)
    assert not (tmp_path / "out.mp4").exists()


def test_video_writer_that_cannot_open_stops_before_the_model(tmp_path, no_model):
    video = _video(tmp_path / "clip.mp4")
    with pytest.raises(SystemExit) as e:
        _run("--video-input", video, "--output", str(tmp_path / "drawn.unknown"))
    assert str(e.value).startswith("error:") and "drawn.unknown" in str(e.value)
    assert "cannot write the video" in str(e.value)


def test_video_output_that_is_the_input_is_refused(tmp_path, no_model):
    video = _video(tmp_path / "clip.mp4")
    before = open(video, "rb").read()
    with pytest.raises(SystemExit) as e:
        _run("--video-input", video, "--output", str(tmp_path))
    assert "would overwrite the input" in str(e.value)
    assert open(video, "rb").read() == before


# Windows need a display.


def _opencv_gui(monkeypatch, gui):
    monkeypatch.setattr(demo.cv2, "getBuildInformation", lambda: f"\n  GUI:   {gui}\n")


def test_headless_opencv_asks_for_output_before_the_model(tmp_path, monkeypatch, no_model):
    _opencv_gui(monkeypatch, "NONE")
    monkeypatch.setenv("DISPLAY", ":0")
    with pytest.raises(SystemExit) as e:
        _run("--input", str(_image(tmp_path / "in.png")))
    assert str(e.value).startswith("error:") and "--output" in str(e.value)
    assert "without GUI support" in str(e.value)


def test_no_display_asks_for_output_before_the_model(tmp_path, monkeypatch, no_model):
    _opencv_gui(monkeypatch, "GTK3")
    monkeypatch.setattr(demo.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SystemExit) as e:
        _run("--video-input", _video(tmp_path / "clip.mp4"))
    assert str(e.value).startswith("error:") and "--output" in str(e.value)
    assert "DISPLAY" in str(e.value)


def test_with_a_display_drawings_are_shown(tmp_path, monkeypatch):
    _opencv_gui(monkeypatch, "GTK3")
    monkeypatch.setattr(demo.sys, "platform", "linux")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    shown = []
    monkeypatch.setattr(demo.cv2, "imshow", lambda name, image: shown.append(image.shape))
    monkeypatch.setattr(demo.cv2, "waitKey", lambda delay: -1)
    _run("--input", str(_image(tmp_path / "in.png")), "--confidence-threshold", "1.0")
    assert shown == [(150, 200, 3)]


# Weights, config and command line.


def test_empty_weights_stop_before_the_model(tmp_path, no_model):
    with pytest.raises(SystemExit) as e:
        demo.main(
            [
                "--config-file",
                CONFIG,
                "--input",
                str(_image(tmp_path / "in.png")),
                "--output",
                str(tmp_path / "out.png"),
                "--opts",
                *OPTS,
            ]
        )
    message = str(e.value)
    assert message.startswith("error:") and "MODEL.WEIGHTS" in message
    assert "--opts MODEL.WEIGHTS" in message and "--allow-random-weights" in message
    assert not (tmp_path / "out.png").exists()


def test_missing_weights_file_stops_before_the_model(tmp_path, no_model):
    with pytest.raises(SystemExit) as e:
        _run(
            "--input",
            str(_image(tmp_path / "in.png")),
            "--output",
            str(tmp_path / "o.png"),
            "--opts",
            "MODEL.WEIGHTS",
            str(tmp_path / "nope.pth"),
        )
    assert str(e.value).startswith("error: MODEL.WEIGHTS") and "nope.pth" in str(e.value)


def test_weights_and_options_after_the_overrides(tmp_path, monkeypatch):
    # A checkpoint with a recognisable value, given as `--opts MODEL.WEIGHTS w.pth`
    # followed by more options, as in `make demo` with the options reordered.
    model = build_model(load_config(CONFIG, OPTS))
    state = model.state_dict()
    state["roi_heads.box_predictor.cls_score.bias"].fill_(0.25)
    torch.save({"model": state}, tmp_path / "w.pth")
    loaded = []
    original = demo.VisualizationPredictor.__call__

    def record(self, image):
        loaded.append(self.predictor.model.roi_heads.box_predictor.cls_score.bias.tolist())
        return original(self, image)

    monkeypatch.setattr(demo.VisualizationPredictor, "__call__", record)
    demo.main(
        [
            "--config-file",
            CONFIG,
            "--opts",
            *OPTS,
            "MODEL.WEIGHTS",
            str(tmp_path / "w.pth"),
            "--input",
            str(_image(tmp_path / "in.png")),
            "--confidence-threshold",
            "1.0",
            "--output",
            str(tmp_path / "out") + os.sep,
        ]
    )
    assert loaded == [[0.25] * 21]
    assert os.listdir(tmp_path / "out") == ["in.png"]


def test_config_is_read_with_safe_yaml(tmp_path, no_model):
    config = tmp_path / "unsafe.yaml"
    config.write_text(f"_BASE_: {CONFIG}\nOUTPUT_DIR: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(SystemExit) as e:
        demo.main(
            [
                "--config-file",
                str(config),
                "--input",
                str(_image(tmp_path / "in.png")),
                "--output",
                str(tmp_path / "o.png"),
                "--allow-random-weights",
            ]
        )
    assert str(e.value).startswith("error:") and "unsafe.yaml" in str(e.value)
    assert "safe_load" in str(e.value)


def _fixed_predictor(frame_shape):
    """A VisualizationPredictor whose model finds the same two objects in every frame."""
    height, width = frame_shape[:2]
    instances = Instances((height, width))
    instances.pred_boxes = Boxes(torch.tensor([[4.0, 4.0, 30.0, 30.0], [34.0, 10.0, 60.0, 40.0]]))
    instances.scores = torch.tensor([0.9, 0.8])
    instances.pred_classes = torch.tensor([2, 6])
    drawer = object.__new__(VisualizationPredictor)
    drawer.predictor = lambda image: {"instances": instances}
    drawer.metadata = MetadataCatalog.get("voc_synth_val")
    drawer.instance_mode = ColorMode.IMAGE
    drawer._video_visualizer = None
    return drawer


def test_video_frames_keep_each_objects_colour():
    frame = np.full((48, 64, 3), 128, np.uint8)
    drawer = _fixed_predictor(frame.shape)
    first, second = (drawer.video_frame(frame)[1] for _ in range(2))
    assert np.array_equal(first, second) and not np.array_equal(first, frame[:, :, ::-1])
    # Drawn one by one, as images, each drawing picks its colours afresh.
    np.random.seed(0)
    assert not np.array_equal(drawer(frame)[1], drawer(frame)[1])


def test_a_file_the_run_did_not_write_is_never_replaced_without_overwrite(tmp_path):
    inputs = [_touch(tmp_path / "in" / "q.jpg"), _touch(tmp_path / "in" / "r.jpg")]
    # The user's own q.png next to the inputs, not one of them.
    users = tmp_path / "in" / "q.png"
    users.write_bytes(b"the user's file")
    with pytest.raises(ValueError, match=r"q\.png exists already.*--overwrite"):
        output_paths(inputs, str(tmp_path / "in"))
    assert users.read_bytes() == b"the user's file"
    assert output_paths(inputs, str(tmp_path / "in"), overwrite=True)[0] == str(users)


def test_the_demo_refuses_to_replace_an_existing_drawing_before_the_model(tmp_path, no_model):
    (tmp_path / "in").mkdir()
    image = _image(tmp_path / "in" / "q.jpg")
    existing = tmp_path / "in" / "q.png"
    existing.write_bytes(b"the user's file")
    with pytest.raises(SystemExit) as e:
        _run("--input", str(tmp_path / "in" / "*.jpg"), "--output", str(tmp_path / "in"))
    assert "q.png exists already" in str(e.value) and "--overwrite" in str(e.value)
    assert existing.read_bytes() == b"the user's file" and image.exists()


def test_a_corrupt_image_among_good_ones_stops_before_the_model_and_any_drawing(tmp_path, no_model):
    (tmp_path / "in").mkdir()
    _image(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    _image(tmp_path / "in" / "c.png")
    with pytest.raises(SystemExit) as e:
        _run("--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"))
    assert "b.jpg" in str(e.value) and "nothing was drawn" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_truncated_weights_are_one_line(tmp_path):
    weights = tmp_path / "model_final.pth"
    torch.save({"model": {"w": torch.zeros(1000)}}, weights)
    weights.write_bytes(weights.read_bytes()[:200])
    image = _image(tmp_path / "x.png")
    with pytest.raises(SystemExit) as e:
        demo.main(
            ["--config-file", CONFIG, "--input", str(image), "--output", str(tmp_path / "o.png")]
            + ["--opts", *OPTS, "MODEL.WEIGHTS", str(weights)]
        )
    assert str(e.value).startswith("error: ") and "model_final.pth cannot be read" in str(e.value)
