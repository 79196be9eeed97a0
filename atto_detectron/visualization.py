"""Predictions drawn with Detectron2's Visualizer (masks, boxes, class names, scores)."""

import collections
import glob
import logging
import os
from typing import List

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import convert_PIL_to_numpy
from detectron2.engine import DefaultPredictor
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

from .checkpoint import AtomicCheckpointer
from .engine.ema import load_ema_weights_if_enabled

__all__ = ["VisualizationPredictor", "expand_inputs", "load_image", "output_paths"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Pillow's modes for 16-bit grayscale. Pillow's convert("RGB") clips them at 255: all
# white. 32-bit integer ("I") and float ("F") images have no fixed range.
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def expand_inputs(inputs: List[str]) -> List[str]:
    """
    Files, globs and folders (their images, sorted) -> image paths, each file once
    (in the order first given).

    Raises:
        FileNotFoundError: naming every input that matches nothing.
    """
    paths, missing, seen = [], [], set()
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, f)
                for f in os.listdir(item)
                if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.isfile(item):
            found = [item]
        else:
            found = sorted(glob.glob(os.path.expanduser(item)))
        if not found:
            missing.append(item)
        for path in found:
            if os.path.realpath(path) not in seen:
                seen.add(os.path.realpath(path))
                paths.append(path)
    if missing:
        raise FileNotFoundError(
            f"--input: no image found at {', '.join(repr(m) for m in missing)} "
            f"(give image files, globs such as 'dir/*.jpg', or folders)"
        )
    return paths


def output_paths(
    inputs: List[str], output: str, extension: str = ".png", overwrite: bool = False
) -> List[str]:
    """
    Where the drawings of ``inputs`` go.

    ``output`` itself for a single input, unless ``output`` is a folder (an existing
    one, or a path ending with a separator). Otherwise, in the folder ``output``:

    * ``<stem><extension>`` for each input (``dir/x.jpg`` -> ``output/x.png``);
    * when inputs of different folders share a stem, their folders relative to the
      inputs' common folder are mirrored under ``output`` (``a/x.jpg``, ``b/x.png`` ->
      ``output/a/x.png``, ``output/b/x.png``);
    * when inputs of one folder share a stem, they keep their extension in the name
      (``x.jpg``, ``x.png`` -> ``x.jpg.png``, ``x.png.png``).

    Args:
        inputs: the input files (or one name, such as "webcam").
        output: the ``--output`` argument.
        extension: of the drawings in a folder.
        overwrite: replace existing files (never an input) instead of refusing.

    Returns:
        One output path per input, in order.

    Raises:
        ValueError: an output would be one of the inputs (the same file: real paths,
            symbolic or hard links), two inputs would be drawn to the same file,
            several inputs would be drawn to an existing file, or, without
            ``overwrite``, an output file exists already, naming them. Nothing has been
            written then.
    """
    if len(inputs) == 1 and not (os.path.isdir(output) or output.endswith(os.sep)):
        outputs = [output]
    elif os.path.isfile(output):
        raise ValueError(f"--output: {output} is a file; draw {len(inputs)} inputs into a folder")
    else:
        folders = [os.path.dirname(os.path.abspath(p)) for p in inputs]
        stems = [os.path.splitext(os.path.basename(p))[0] for p in inputs]
        folders_of_stem = collections.defaultdict(set)
        for folder, stem in zip(folders, stems):
            folders_of_stem[stem].add(folder)
        if any(len(f) > 1 for f in folders_of_stem.values()):
            common = os.path.commonpath(folders)
            subfolders = [os.path.relpath(f, common) for f in folders]
        else:
            subfolders = [""] * len(inputs)
        count = collections.Counter(zip(folders, stems))
        outputs = []
        for path, folder, stem, subfolder in zip(inputs, folders, stems, subfolders):
            name = os.path.basename(path) if count[(folder, stem)] > 1 else stem
            outputs.append(os.path.normpath(os.path.join(output, subfolder, name + extension)))
    _check_outputs(inputs, outputs)
    existing = [out for out in outputs if os.path.lexists(out)]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ValueError(
            f"--output: {existing[0]}{more} exists already; drawings replace no file they "
            f"did not write: choose another --output, or give --overwrite to replace them"
        )
    return outputs


def _check_outputs(inputs: List[str], outputs: List[str]) -> None:
    # The same file is the same (device, inode): this sees through "..", symbolic and
    # hard links, and case-insensitive file systems. An output that does not exist yet
    # cannot be an input.
    inputs_by_id = {_file_id(p): p for p in inputs if os.path.exists(p)}
    first_input_of = {}
    for path, out in zip(inputs, outputs):
        if os.path.exists(out) and _file_id(out) in inputs_by_id:
            overwritten = inputs_by_id[_file_id(out)]
            written_as = "" if out == overwritten else f" (written as {out})"
            raise ValueError(
                f"--output: the drawing of {path} would overwrite the input "
                f"{overwritten}{written_as}; choose another --output"
            )
        key = os.path.normcase(os.path.realpath(out))
        if key in first_input_of:
            raise ValueError(
                f"--output: {first_input_of[key]} and {path} would both be drawn to {out}; "
                f"rename one of them or draw them into different folders"
            )
        first_input_of[key] = path


def _file_id(path):
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def load_image(path: str) -> np.ndarray:
    """
    Reads any image Pillow reads (grayscale, RGBA, palette, 16-bit, EXIF-rotated) as
    BGR uint8, ``(H, W, 3)``, as Detectron2's ``read_image(path, "BGR")`` does.

    Every bit depth keeps its contrast (where ``read_image`` would clip 16-bit grayscale
    at 255, an all-white image, and draw a 0..1 float image black):

    * 16-bit: 0..65535 becomes 0..255 by the high byte, as Pillow itself reads 16-bit
      RGB PNGs;
    * 32-bit integer: its own range, lowest to highest value, becomes 0..255;
    * 32-bit float: 0..1 becomes 0..255 when all values lie there, else its own range
      does; NaN and infinite pixels are drawn as 0.

    Raises:
        ValueError: naming the file, when it is not a readable image, or a float image
            holds no finite value.
    """
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in _SIXTEEN_BIT_MODES:
                gray = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
                image = Image.fromarray(gray.astype(np.uint8))  # mode "L"
            elif image.mode in ("I", "F"):
                image = Image.fromarray(_deep_to_uint8(np.asarray(image), path))  # "L"
            return convert_PIL_to_numpy(image, "BGR")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e}); check or re-export the file") from e


def _deep_to_uint8(values: np.ndarray, path: str) -> np.ndarray:
    """A 32-bit integer or float grayscale ``(H, W)`` as uint8 (see :func:`load_image`)."""
    is_float = values.dtype.kind == "f"
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError(f"{path}: a float image without one finite pixel (all NaN or inf)")
    low, high = values[finite].min(), values[finite].max()
    if is_float and low >= 0 and high <= 1:
        scaled = values * 255.0
    else:
        scaled = (values - low) * (255.0 / max(high - low, 1e-12))
    if not finite.all():
        logger.warning(f"{path}: {(~finite).sum()} NaN or infinite pixels, drawn as 0")
    scaled[~finite] = 0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


class VisualizationPredictor:
    """Runs a model on BGR images and draws its instances with the dataset's metadata."""

    def __init__(self, cfg, instance_mode=ColorMode.IMAGE):
        # DefaultPredictor loads MODEL.WEIGHTS with Detectron2's checkpointer, which
        # unpickles .pth files; the project's checkpointer loads them weights_only.
        without_weights = cfg.clone()
        without_weights.defrost()
        without_weights.MODEL.WEIGHTS = ""
        self.predictor = DefaultPredictor(without_weights)
        AtomicCheckpointer(self.predictor.model).load(cfg.MODEL.WEIGHTS)
        load_ema_weights_if_enabled(self.predictor.model, cfg)
        names = cfg.DATASETS.TEST or cfg.DATASETS.TRAIN
        self.metadata = MetadataCatalog.get(names[0] if len(names) else "__unused")
        self.instance_mode = instance_mode
        self._video_visualizer = None

    def __call__(self, image_bgr: np.ndarray):
        """
        Args:
            image_bgr: ``(H, W, 3)`` uint8, BGR.

        Returns:
            (predictions, drawn): the model's output dict and the drawing as an
            ``(H, W, 3)`` uint8 RGB array.
        """
        predictions = self.predictor(image_bgr)
        instances = predictions["instances"].to("cpu")
        visualizer = Visualizer(
            image_bgr[:, :, ::-1], self.metadata, instance_mode=self.instance_mode
        )
        drawn = visualizer.draw_instance_predictions(predictions=instances)
        return predictions, drawn.get_image()

    def video_frame(self, frame_bgr: np.ndarray):
        """
        As :meth:`__call__`, for the consecutive frames of one video: Detectron2's
        VideoVisualizer matches each object to the previous frame's, so that it keeps
        its colour from frame to frame.
        """
        if self._video_visualizer is None:
            self._video_visualizer = VideoVisualizer(self.metadata, self.instance_mode)
        predictions = self.predictor(frame_bgr)
        drawn = self._video_visualizer.draw_instance_predictions(
            frame_bgr[:, :, ::-1], predictions["instances"].to("cpu")
        )
        return predictions, drawn.get_image()

    @staticmethod
    def save(drawn_rgb: np.ndarray, path: str) -> None:
        """Writes an ``(H, W, 3)`` uint8 RGB drawing to ``path``, creating its folder."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        Image.fromarray(drawn_rgb).save(path)
