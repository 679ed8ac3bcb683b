#!/usr/bin/env bash
# Create .venv and install the project. `--dev` adds the test tools and the system packages the native, Kotlin
# and server tests build with (scripts/system_deps.sh: Debian packages + the Kotlin compiler from npm), and builds
# the native runtime (apps/native/build.sh, ~40 s; the tests' own call is then an up-to-date check).
# torch is installed first and pinned: the CPU wheel of 2.13.0; an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".${extra}"
if [ "${1:-}" = "--dev" ]; then
  bash scripts/system_deps.sh
  echo "setup: building the native runtime (apps/native/build.sh)"
  bash apps/native/build.sh > /dev/null
fi
