#!/usr/bin/env bash
# Builds apps/native/build/{spartan-edge,libspartan_edge.so} against the ExecuTorch C++ runtime of the project's
# venv (the executorch wheel ships it). Usage: bash apps/native/build.sh [Debug|Release]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
for tool in cmake g++ pkg-config; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (bash scripts/system_deps.sh installs it)" >&2; exit 2; }
done
# One build at a time: parallel test workers (pytest -n) and the Android tests all call this script.
mkdir -p "$HERE/build"
exec 9>"$HERE/build/.lock"
flock 9
ET_DIR="$("$PY" -c 'import executorch, pathlib; print(pathlib.Path(executorch.__path__[0]))')"
cmake -S "$HERE" -B "$HERE/build" -DCMAKE_BUILD_TYPE="${1:-Release}" -DCMAKE_PREFIX_PATH="$ET_DIR" >/dev/null
cmake --build "$HERE/build" -j "${JOBS:-2}"
