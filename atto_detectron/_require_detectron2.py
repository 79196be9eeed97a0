"""Fails early, with the fix, when Detectron2 is not importable."""

__all__ = ["require_detectron2"]

_HOW_TO_INSTALL = (
    "atto_detectron needs Detectron2, which pip cannot install from the registry by name.\n"
    "  * In this repository: `make test` or `make demo` build the locked environment\n"
    "    (Python 3.10, torch 2.3.1, sal-detectron2==0.7.2; see requirements/lock.txt).\n"
    "  * By hand, on Python 3.10: pip install -r requirements/lock.txt\n"
    "  * Or build Detectron2 from source for your torch:\n"
    "    https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
)


def require_detectron2():
    """Imports Detectron2's compiled layers; raises ImportError with install help if absent."""
    try:
        import detectron2  # noqa: F401
        from detectron2 import layers  # noqa: F401  (loads detectron2._C)
    except ImportError as e:
        raise ImportError(f"{_HOW_TO_INSTALL}\n(original error: {e})") from e
