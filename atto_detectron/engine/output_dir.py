"""One run per OUTPUT_DIR: a lock, and checks that a run does not overwrite another's files."""

import contextlib
import os
import socket
import sys
import time

__all__ = ["OutputDirError", "exclusive_output_dir", "earlier_run_files"]

LOCK_FILE = "run.lock"
# Files that show that a training run has used a folder.
RUN_FILES = ("last_checkpoint", "metrics.json")


class OutputDirError(RuntimeError):
    """An OUTPUT_DIR that this run must not write to (named in the message, with the fix)."""


def earlier_run_files(output_dir: str):
    """The files of :data:`RUN_FILES` that exist in ``output_dir``."""
    return [name for name in RUN_FILES if os.path.exists(os.path.join(output_dir, name))]


@contextlib.contextmanager
def exclusive_output_dir(output_dir: str):
    """
    Holds an exclusive lock on ``output_dir`` (created if missing) for the block, so
    that a second run started with the same OUTPUT_DIR stops at once instead of
    interleaving its checkpoints and metrics with this one's. The lock is the kernel's
    (``flock``): it is released when the process ends, however it ends.

    Folders that are not local (URIs) are not locked.

    Raises:
        OutputDirError: another process holds the lock; the message says which.
    """
    if "://" in output_dir:
        yield
        return
    import fcntl

    path = os.path.join(output_dir, LOCK_FILE)
    try:
        os.makedirs(output_dir, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputDirError(
            f"OUTPUT_DIR {output_dir} cannot be used as the run's folder ({e.strerror}: "
            f"{e.filename}). Give OUTPUT_DIR a folder this user can write, that is not a file."
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            raise OutputDirError(
                f"OUTPUT_DIR {output_dir} is in use by another run ({holder}). Wait for it "
                f"to end, or give this run its own folder: OUTPUT_DIR <folder>."
            ) from None
        holder = (
            f"pid {os.getpid()} on {socket.gethostname()}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}"
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode() + b"\n", 0)
        yield
    finally:
        os.close(fd)  # releases the lock
