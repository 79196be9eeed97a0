#!/usr/bin/env bash
# Creates (once) and prints the path of this checkout's Python 3.10 virtual environment.
#
# The locked packages live in a per-user cache folder keyed by a hash of
# requirements/lock.txt, so they are installed only when the lock changes and are shared
# by every clone of the project. Each checkout gets its own small environment on top,
# `.venv` in the checkout: it sees the shared packages (a .pth file in its
# site-packages) and holds the editable install of this checkout alone, so two clones
# never point each other's environment at their code.
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

# This checkout's environment: a venv without packages of its own but the editable
# install of this checkout, that sees the shared ones through a .pth file.
overlay="$root/.venv"
shared_site="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ -L "$overlay" ]; then rm -f "$overlay"; fi  # the link to the shared environment of old
if [ "$(cat "$overlay/.shared" 2>/dev/null)" != "$env_dir" ] \
    || ! "$overlay/bin/python" -c 'import atto_detectron, detectron2' >/dev/null 2>&1; then
    rm -rf "$overlay"
    "$env_dir/bin/python" -m venv --without-pip "$overlay"
    site="$("$overlay/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # addsitedir also runs the shared packages' own .pth files.
    echo "import site; site.addsitedir('$shared_site')" > "$site/atto_shared_env.pth"
    "$overlay/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --no-deps --no-build-isolation --no-index -e "$root" >&2
    # Command-line tools of the shared packages (ruff's binary, ...) on the same PATH.
    for tool in "$env_dir"/bin/*; do
        name="$(basename "$tool")"
        [ -e "$overlay/bin/$name" ] || ln -s "$tool" "$overlay/bin/$name"
    done
    echo "$env_dir" > "$overlay/.shared"
fi
echo "$overlay"
