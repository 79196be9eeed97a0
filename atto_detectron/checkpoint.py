"""Checkpoints that are written atomically, loaded without running code, and resumed safely."""

import os
import pickle
import re
from typing import Dict, List

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

__all__ = [
    "AtomicCheckpointer",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointWriteError",
    "atomic_write",
    "check_optimizer_matches",
    "last_checkpoint_file",
    "load_pickled_weights",
    "load_weights_file",
    "unhealthy_tensors",
]

LAST_CHECKPOINT = "last_checkpoint"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupt or unsafe), named in the error."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint to resume from whose parameters do not fit the model being trained."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that cannot be written (disk full, permissions), named in the error."""


class AtomicCheckpointer(DetectionCheckpointer):
    """
    Detectron2's DetectionCheckpointer, made safe for long runs:

    * a checkpoint and the ``last_checkpoint`` tag are never seen half-written: local
      files are written to a temporary file and renamed into place (other URIs go
      through fvcore's PathManager);
    * a checkpoint whose weights are not healthy (NaN, inf, or exploded: see
      :func:`unhealthy_tensors`) is not saved, so ``last_checkpoint`` always names a
      model that training can go on from;
    * ``.pth`` files and pycls ``.pyth`` files are loaded with
      ``torch.load(weights_only=True)``, and Detectron2's ``.pkl`` files (its model zoo's
      format: numpy arrays in dicts) with an unpickler that builds nothing but numpy
      arrays and plain data (:func:`load_pickled_weights`): a crafted file cannot run
      code;
    * resuming refuses a checkpoint whose parameters do not fit the model, and falls back
      from an unreadable last checkpoint to the newest readable one, with a warning.
    """

    _resuming_from = None  # the checkpoint being resumed from, during resume_or_load

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        model_state = self.model.state_dict()
        unhealthy = unhealthy_tensors(model_state, self._buffer_names())
        if unhealthy:
            self.logger.error(
                f"Not saving checkpoint {name}: the weights are not healthy "
                f"({'; '.join(unhealthy[:3])}{'; ...' if len(unhealthy) > 3 else ''}). The "
                f"last checkpoint stays {self.get_checkpoint_file() or 'none'}."
            )
            return
        data = {"model": model_state}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)

        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        try:
            self._write(save_file, lambda f: torch.save(data, f), mode="wb")
            self.tag_last_checkpoint(basename)
        except OSError as e:
            # Disk full, quota, permissions: the temporary file is gone, the last
            # checkpoint is untouched.
            raise CheckpointWriteError(
                f"Cannot write checkpoint {save_file}: {e.strerror or e}. Free space (or fix "
                f"the folder's permissions), then run again with --resume: it continues "
                f"from {self.get_checkpoint_file() or 'the start'}."
            ) from e

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        save_file = os.path.join(self.save_dir, LAST_CHECKPOINT)
        self._write(save_file, lambda f: f.write(last_filename_basename), mode="w")

    def _write(self, path: str, write, mode: str) -> None:
        if "://" in path:  # a URI of fvcore's PathManager (no rename there)
            with self.path_manager.open(path, mode) as f:
                write(f)
        else:
            atomic_write(path, write, mode=mode)

    def get_checkpoint_file(self) -> str:
        """The checkpoint named by ``last_checkpoint`` (see :func:`last_checkpoint_file`)."""
        return last_checkpoint_file(self.save_dir, self.path_manager)

    def newest_healthy_checkpoint(self) -> str:
        """
        The newest checkpoint of ``save_dir`` that can be read and whose weights are
        healthy (:func:`unhealthy_tensors`); "" when there is none.
        """
        if not self.has_checkpoint():
            return ""
        for candidate in self.resume_candidates():
            try:
                model = self._torch_load(candidate).get("model", {})
            except CheckpointError:
                continue
            if isinstance(model, dict) and not unhealthy_tensors(model, self._buffer_names()):
                return candidate
        return ""

    def _buffer_names(self):
        return {name for name, _ in self.model.named_buffers()}

    def _torch_load(self, f: str) -> Dict:
        return load_weights_file(f, self.path_manager)

    def _load_file(self, filename: str) -> Dict:
        # fvcore's documented override point for file formats. Detectron2's own unpickles
        # ".pkl" files and reads a pycls ".pyth" with an unrestricted torch.load: both
        # are read without running code here, and converted as Detectron2 does.
        if filename.endswith(".pkl"):
            return _detectron2_pkl_checkpoint(load_pickled_weights(filename), self.logger)
        if not filename.endswith(".pyth"):
            return super()._load_file(filename)
        data = load_weights_file(filename, self.path_manager)
        if not isinstance(data, dict) or "model_state" not in data:
            raise CheckpointError(
                f"{filename}: a .pyth file is read as a pycls checkpoint, which holds "
                f"'model_state'; this one does not. Save the weights as a .pth state dict."
            )
        model_state = {
            k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")
        }
        return {"model": model_state, "__author__": "pycls", "matching_heuristics": True}

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict:
        """
        With ``resume`` and a ``last_checkpoint`` in ``save_dir``: loads the model and all
        checkpointables from it, or, where it cannot be read, from the newest readable
        older checkpoint (with a warning naming both). Otherwise loads the model weights
        of ``path`` only.

        Raises:
            CheckpointMismatchError: the checkpoint to resume from has other parameter
                names or shapes than the model.
            CheckpointError: no checkpoint of ``save_dir`` can be read.
        """
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        return self._from_newest_readable(self._resume_from)

    def check_resumable(self, optimizer=None) -> str:
        """
        What :meth:`resume_or_load` would resume from, checked without loading it into
        the model: the newest readable checkpoint of ``save_dir`` ("" without one).

        Args:
            optimizer: the optimizer the resumed run would build; its parameter groups
                must hold as many parameters each as the checkpoint's optimizer state.

        Raises:
            CheckpointMismatchError, CheckpointError: as :meth:`resume_or_load`; also
                when ``optimizer`` trains another set of parameters than the checkpoint.
        """
        if not self.has_checkpoint():
            return ""

        def check(candidate):
            checkpoint = self._torch_load(candidate)
            self.check_matches(checkpoint.get("model", {}), candidate)
            saved = _saved_optimizer_state(checkpoint)
            if optimizer is not None and saved is not None:
                check_optimizer_matches(saved, optimizer, candidate)
            return candidate

        return self._from_newest_readable(check)

    def _resume_from(self, checkpoint_path: str) -> Dict:
        self._resuming_from = checkpoint_path
        try:
            return self.load(checkpoint_path)
        except CheckpointError:
            # DetectionCheckpointer.load keeps the URL of a failed load, and asserts that
            # none is left when the next one starts.
            self._parsed_url_during_load = None
            raise
        finally:
            self._resuming_from = None

    def _load_model(self, checkpoint: Dict):
        if self._resuming_from:
            self.check_matches(checkpoint["model"], self._resuming_from)
        return super()._load_model(checkpoint)

    def _from_newest_readable(self, read):
        # read(path) on the last checkpoint, else on the next older one that can be read.
        errors = []
        for candidate in self.resume_candidates():
            try:
                result = read(candidate)
            except CheckpointError as e:
                errors.append(str(e))
                continue
            if errors:
                self.logger.warning(
                    f"The last checkpoint cannot be read ({errors[0]}); using {candidate}, "
                    f"the newest checkpoint that can."
                )
            return result
        raise CheckpointError(
            f"No checkpoint in {self.save_dir} can be read:\n  " + "\n  ".join(errors)
        )

    def resume_candidates(self) -> List[str]:
        """The last checkpoint, then the other ``.pth`` files of ``save_dir``, newest first."""
        last = self.get_checkpoint_file()
        others = sorted(
            (p for p in self.get_all_checkpoint_files() if p != last),
            key=lambda p: _checkpoint_order(os.path.basename(p)),
            reverse=True,
        )
        return [last] + others

    def check_matches(self, checkpoint_model: Dict, checkpoint_path: str) -> None:
        """
        Raises CheckpointMismatchError, naming the checkpoint and the differences, unless
        ``checkpoint_model`` has exactly the parameter names and shapes of the model.
        """
        model_shapes = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        saved_shapes = {k: tuple(getattr(v, "shape", ())) for k, v in checkpoint_model.items()}
        missing = sorted(model_shapes.keys() - saved_shapes.keys())
        unexpected = sorted(saved_shapes.keys() - model_shapes.keys())
        reshaped = sorted(
            f"{k}: {saved_shapes[k]} in the checkpoint, {model_shapes[k]} in the model"
            for k in model_shapes.keys() & saved_shapes.keys()
            if model_shapes[k] != saved_shapes[k]
        )
        if not (missing or unexpected or reshaped):
            return
        lines = []
        for label, names in (
            ("missing from the checkpoint", missing),
            ("not in the model", unexpected),
            ("with other shapes", reshaped),
        ):
            if names:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                lines.append(f"{len(names)} parameters {label} ({shown})")
        raise CheckpointMismatchError(
            f"Cannot resume from {checkpoint_path}: it holds another model than the one of "
            f"this config: {'; '.join(lines)}. It was written by another run in the same "
            f"OUTPUT_DIR; give this config its own OUTPUT_DIR."
        )


def _saved_optimizer_state(checkpoint: Dict):
    # DefaultTrainer keeps the optimizer's state inside its own, under the SimpleTrainer
    # it delegates to: checkpoint["trainer"]["_trainer"]["optimizer"].
    for path in (("optimizer",), ("trainer", "optimizer"), ("trainer", "_trainer", "optimizer")):
        node = checkpoint
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and "param_groups" in node:
            return node
    return None


def check_optimizer_matches(saved: Dict, optimizer, checkpoint_path: str) -> None:
    """
    Raises CheckpointMismatchError, naming the checkpoint and the keys that decide it,
    unless ``optimizer`` has as many parameter groups as the ``saved`` optimizer state,
    each with as many parameters: otherwise the run that wrote it trained another set of
    parameters, and loading its state would fail or pair momenta with the wrong weights.
    """
    saved_sizes = [len(group.get("params", [])) for group in saved.get("param_groups", [])]
    sizes = [len(group["params"]) for group in optimizer.param_groups]
    if saved_sizes == sizes:
        return
    raise CheckpointMismatchError(
        f"Cannot resume from {checkpoint_path}: it was trained with {sum(saved_sizes)} "
        f"trainable parameter tensors in {len(saved_sizes)} optimizer groups, this config "
        f"trains {sum(sizes)} in {len(sizes)}. MODEL.BACKBONE.FREEZE_AT (or another key "
        f"that freezes layers, or SOLVER.*_NORM / WEIGHT_DECAY_* keys that split the groups) "
        f"differs from the run that wrote it: resume with its config.yaml, or give this "
        f"config its own OUTPUT_DIR."
    )


def last_checkpoint_file(save_dir: str, path_manager=PathManager) -> str:
    """
    The checkpoint that ``save_dir/last_checkpoint`` names ("" when there is none).

    Raises:
        CheckpointError: the tag names anything but a file in ``save_dir``.
    """
    tag = os.path.join(save_dir, LAST_CHECKPOINT)
    try:
        with path_manager.open(tag, "r") as f:
            name = f.read().strip()
    except OSError:
        return ""
    if not name or os.path.basename(name) != name or name in (".", ".."):
        raise CheckpointError(
            f"{tag} names {name!r}, which is not a checkpoint file in {save_dir}; write the "
            f"name of one of its model_*.pth files into it, or delete it."
        )
    return os.path.join(save_dir, name)


def load_weights_file(path: str, path_manager=None) -> Dict:
    """
    ``torch.load(path, map_location="cpu", weights_only=True)``, with errors that name the
    file: tensors, numbers, strings and containers load; anything else would need code to
    run and is refused.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, or holds other objects.
    """
    opener = path_manager.open if path_manager is not None else open
    try:
        with opener(path, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds Python objects other than tensors, numbers, strings and "
            f"containers, so loading it could run code; it was not loaded ({e}). Save the "
            f"weights as a plain state dict, or load it yourself if you trust its source."
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read (truncated or corrupt?): {e}") from e


class _WeightsUnpickler(pickle.Unpickler):
    """Builds numpy arrays, dtypes and plain containers; refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in weights")


def load_pickled_weights(path: str) -> Dict:
    """
    A Detectron2 ``.pkl`` weights file (a pickled dict of numpy arrays, as its model zoo
    and ``tools/convert-torchvision-to-d2.py`` write them) read with an unpickler that
    only builds numpy arrays and plain data, so that a crafted file cannot run code.

    Raises:
        CheckpointError: naming the file, when it is unreadable or holds other objects.
    """
    try:
        with PathManager.open(path, "rb") as f:
            data = _WeightsUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds Python objects other than numpy arrays and plain data, so "
            f"unpickling it could run code; it was not loaded ({e})."
        ) from e
    except (OSError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} cannot be read (truncated or corrupt?): {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a dict of weights.")
    return data


def _detectron2_pkl_checkpoint(data: Dict, logger) -> Dict:
    # What Detectron2's DetectionCheckpointer makes of an unpickled .pkl: its model zoo's
    # format as it is, Caffe2 / Detectron1 blobs with name-matching heuristics.
    if "model" in data and "__author__" in data:
        logger.info(f"Reading a file from '{data['__author__']}'")
        return data
    if "blobs" in data:
        data = data["blobs"]
    data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
    return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}


# Largest healthy magnitudes. A trained detector's parameters stay near 1 and its BN
# statistics near 10 (AttoNet-A on the generated data: 1.6 and 33); a learning rate that
# makes training diverge first blows the parameters up (to 5e3 one step before the boxes
# become infinite at SOLVER.BASE_LR 1000), which no run can continue from.
MAX_HEALTHY_PARAMETER = 1e3
MAX_HEALTHY_BUFFER = 1e6


def unhealthy_tensors(state: Dict, buffers=None) -> List[str]:
    """
    The float tensors of a model state that are not healthy, each as "name: why": NaN or
    inf anywhere, or an absolute value above MAX_HEALTHY_PARAMETER (parameters) or
    MAX_HEALTHY_BUFFER (buffers such as BN running statistics).

    Args:
        state: a model ``state_dict``.
        buffers: names of the buffers in ``state``; default: names with ``running_`` (BN
            statistics).
    """
    found = []
    for name, value in state.items():
        if not (torch.is_tensor(value) and value.is_floating_point() and value.numel()):
            continue
        if not torch.isfinite(value).all():
            found.append(f"{name}: NaN/inf")
            continue
        is_buffer = name in buffers if buffers is not None else "running_" in name
        bound = MAX_HEALTHY_BUFFER if is_buffer else MAX_HEALTHY_PARAMETER
        largest = value.abs().max().item()
        if largest > bound:
            found.append(f"{name}: |value| {largest:.3g} > {bound:g}")
    return found


def _checkpoint_order(basename: str):
    # model_final after every model_<iteration>; other names first, by name.
    match = re.fullmatch(r"model_(\d+)\.pth", basename)
    if match:
        return (1, int(match.group(1)), basename)
    if basename == "model_final.pth":
        return (2, 0, basename)
    return (0, 0, basename)


def atomic_write(path: str, write, mode: str = "w") -> None:
    """
    Writes ``path`` so that it is never seen half-written: ``write(f)`` fills a temporary
    file next to it, which is synced and then renamed over ``path``.

    Args:
        path: the file to write.
        write: called with the open temporary file.
        mode: "w" (text) or "wb" (binary).
    """
    tmp_path = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp_path, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
