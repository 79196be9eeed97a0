"""Checkpoints written atomically."""

import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["AtomicCheckpointer", "atomic_write"]


class AtomicCheckpointer(DetectionCheckpointer):
    """
    A DetectionCheckpointer whose files are never seen half-written: each checkpoint and
    the ``last_checkpoint`` tag are written to a temporary file and renamed into place,
    so a run killed while saving leaves the previous checkpoint as the last one.
    """

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)

        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f), mode="wb")
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        save_file = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(save_file, lambda f: f.write(last_filename_basename), mode="w")


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
