#!/usr/bin/env bash
# Scratch virtualenvs for comparing Ray and Dask distributed, outside the project's own venv:
#
#   bash bench/engines/setup.sh            # makes /tmp/venv-ray and /tmp/venv-dask, prints sizes
#
# Each venv gets only the engine and numpy, so the size printed is what the engine adds to a
# bare interpreter (numpy's own share is printed beside it, since the mesh has numpy already).
# Then run bench/engines/engines.py with each venv's interpreter (see its docstring).
set -euo pipefail

make_venv() {
    local name=$1
    shift
    local venv=/tmp/venv-$name
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    local site
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    local before
    before=$(du -sk "$site" | cut -f1)
    local t0=$SECONDS
    "$venv/bin/pip" install -q "$@"
    local after
    after=$(du -sk "$site" | cut -f1)
    local numpy_kb
    numpy_kb=$(du -sk "$site/numpy" "$site/numpy.libs" 2>/dev/null | awk '{s += $1} END {print s}')
    echo "$name: site-packages grew by $(((after - before) / 1024)) MiB" \
        "(numpy's share $((numpy_kb / 1024)) MiB), pip install took $((SECONDS - t0)) s"
}

make_venv ray ray numpy
make_venv dask 'dask[distributed]' numpy
