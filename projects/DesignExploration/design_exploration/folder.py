"""
The files of a design search: its state file, and the spec and weights files it names.

The state names files by paths relative to the search's folder. A path read from a state
file is used only after checking that it resolves (links included) inside the folder: a
state naming any other file is refused before anything is loaded, copied or deleted.
Weights are read with ``torch.load(weights_only=True)``, so a weights file cannot run
code.
"""

import json
import os
import shutil
from typing import Dict, Iterable

import torch

from atto_detectron.checkpoint import atomic_write, load_weights_file
from atto_detectron.modeling import AttoNetSpec, save_attonet_spec

from .records import STATE_VERSION, SearchState

__all__ = ["STATE_FILE", "SearchFolder", "load_state"]

STATE_FILE = "explore_state.json"


def _inside(root: str, relative_path, state_path: str) -> str:
    """
    ``relative_path`` (read from the search state ``state_path``) joined to ``root``,
    after checking that it resolves (links included) inside it.
    """
    real_root = os.path.realpath(root)
    if isinstance(relative_path, str) and not os.path.isabs(relative_path):
        path = os.path.realpath(os.path.join(real_root, relative_path))
        if os.path.commonpath([real_root, path]) == real_root and path != real_root:
            return path
    raise ValueError(
        f"{state_path} names the file {relative_path!r}, which is not inside the search's "
        f"folder {root}: a search state only holds paths relative to its folder. This "
        f"state was changed or comes from elsewhere; nothing was loaded or deleted. Start a "
        f"new --output."
    )


class SearchFolder:
    """
    The folder of one design search (see the module docstring).

    Paths the search chooses go through :meth:`path`; paths read from its state through
    :meth:`checked` (or the methods that use it).
    """

    def __init__(self, root: str):
        self.root = root
        self.state_path = os.path.join(root, STATE_FILE)

    def path(self, relative_path: str) -> str:
        """A path of the search's own choosing, in the folder."""
        return os.path.join(self.root, relative_path)

    def checked(self, relative_path: str) -> str:
        """
        A path read from the state, checked to be inside the folder.

        Raises:
            ValueError: naming the state file, when it is not.
        """
        return _inside(self.root, relative_path, self.state_path)

    # ------------------------------------------------------------------ state

    def has_state(self) -> bool:
        return os.path.exists(self.state_path)

    def load_state(self) -> SearchState:
        """
        Raises:
            ValueError: naming the state file, when it is not a valid state of this
                version, or names a file outside the folder.
        """
        path = self.state_path
        try:
            with open(path) as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path} is not a valid search state ({e}); start a new --output"
            ) from e
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a valid search state; start a new --output")
        if data.get("version") != STATE_VERSION:
            raise ValueError(
                f"{path}: search state version {data.get('version')} is not supported; this "
                f"explorer reads version {STATE_VERSION} (which records the peers, the latency "
                f"settings, the objective, and the depth and neck choices). Start a new "
                f"--output, or finish that search with the explorer that started it."
            )
        try:
            state = SearchState.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(
                f"{path} is not a search state that this version can read ({e!r}); start a "
                f"new --output"
            ) from e
        for relative_path in state.relative_paths():
            self.checked(relative_path)
        return state

    def save_state(self, state: SearchState) -> None:
        """Writes ``state`` atomically: a killed search leaves the previous state."""
        os.makedirs(self.root, exist_ok=True)
        data = state.to_dict()
        atomic_write(self.state_path, lambda f: json.dump(data, f, indent=1), mode="w")

    # ------------------------------------------------------------------ networks

    def save_spec(self, spec: AttoNetSpec, relative_path: str) -> str:
        """Writes ``spec``'s spec file; returns its path."""
        return save_attonet_spec(spec, self.path(relative_path))

    def save_text(self, text: str, relative_path: str) -> str:
        """Writes a text file (a config) atomically; returns ``relative_path``."""
        path = self.path(relative_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, lambda f: f.write(text), mode="w")
        return relative_path

    def save_weights(self, state_dict: Dict, relative_path: str) -> str:
        """Writes the weights file atomically; returns ``relative_path``."""
        path = self.path(relative_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, lambda f: torch.save(state_dict, f), mode="wb")
        return relative_path

    def load_weights(self, relative_path: str) -> Dict:
        """The weights file that the state names, tensors only."""
        return load_weights_file(self.checked(relative_path))

    def copy(self, relative_source: str, relative_path: str) -> None:
        """Copies the file that the state names to ``relative_path``."""
        shutil.copyfile(self.checked(relative_source), self.path(relative_path))

    @staticmethod
    def remove(paths: Iterable[str]) -> None:
        """Deletes ``paths`` (from :meth:`checked`) that exist."""
        for path in paths:
            if os.path.exists(path):
                os.remove(path)


def load_state(output_dir: str) -> SearchState:
    """
    The search state in ``output_dir`` (see :data:`STATE_FILE`).

    Raises:
        ValueError: when it is not a valid state, or names a file outside ``output_dir``.
    """
    return SearchFolder(output_dir).load_state()
