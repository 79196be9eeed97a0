#!/usr/bin/env bash
# Creates (once) and prints the path of the project's Python 3.10 virtual environment.
#
# The environment lives in a per-user cache folder keyed by a hash of
# requirements/lock.txt, so it is built only when the lock changes and is shared by
# every clone of the project; `.venv` in the checkout links to it. The checkout itself
# is installed into it in editable mode (`pip install -e .`), re-done when the
# environment was last used by another checkout.
#
# With --find-python it only prints the Python 3.10 interpreter it would use.
#
# Environment variables:
#   ATTO_PYTHON      Python 3.10 interpreter to build the environment with
#                    (default: python3.10 on PATH, else pyenv's newest 3.10).
#   ATTO_ENV_CACHE   cache folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/atto-detectron).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lock="$root/requirements/lock.txt"

find_python() {
    if [ -n "${ATTO_PYTHON:-}" ]; then echo "$ATTO_PYTHON"; return; fi
    if command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import venv' 2>/dev/null; then
        command -v python3.10; return
    fi
    if command -v pyenv >/dev/null 2>&1; then
        local v
        v="$(ls -d "$(pyenv root)"/versions/3.10.* 2>/dev/null | sort -V | tail -n 1)"
        if [ -n "$v" ] && [ -x "$v/bin/python3.10" ]; then echo "$v/bin/python3.10"; return; fi
    fi
    echo "error: Python 3.10 not found. Detectron2's compiled wheel (sal-detectron2) is" \
         "built for CPython 3.10 only: install it (e.g. 'pyenv install 3.10') or set" \
         "ATTO_PYTHON=/path/to/python3.10." >&2
    exit 1
}

if [ "${1:-}" = "--find-python" ]; then find_python; exit 0; fi

key="$(sha256sum "$lock" | cut -c1-12)"
cache="${ATTO_ENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/atto-detectron}"
env_dir="$cache/venv-py310-$key"

mkdir -p "$cache"
exec 9>"$env_dir.lock"
flock 9  # one build at a time when several clones start together

if [ ! -f "$env_dir/.complete" ]; then
    python="$(find_python)"
    echo ">> building the environment in $env_dir (once per lock file; about 5 GB)" >&2
    rm -rf "$env_dir"
    "$python" -m venv "$env_dir"
    "$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input -r "$lock" >&2
    touch "$env_dir/.complete"
fi

if [ "$(cat "$env_dir/.checkout" 2>/dev/null)" != "$root" ] \
    || ! "$env_dir/bin/python" -c 'import atto_detectron' >/dev/null 2>&1; then
    "$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --no-deps --no-build-isolation -e "$root" >&2
    echo "$root" > "$env_dir/.checkout"
fi

ln -sfn "$env_dir" "$root/.venv"
echo "$env_dir"
