#!/usr/bin/env bash
# The scaled-out demo server on loopback, in the foreground: a throwaway PostgreSQL, two gunicorn instances sharing
# it and one blob folder, nginx in front sending the file bodies (X-Accel-Redirect). Ctrl-C stops everything.
#
#   bash scripts/scaleout.sh                       # nginx on http://127.0.0.1:8080, console at /
#   bash scripts/scaleout.sh --dist dist           # ... and publish an export folder once it is up
#   bash scripts/scaleout.sh --instances 3 --port 9000 --root /tmp/stack
#   SPARTAN_EDGE_DATABASE=postgresql://u@db/spartan bash scripts/scaleout.sh    # an existing PostgreSQL
#
# Needs Debian's postgresql and nginx (scripts/system_deps.sh) and the venv (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m demo_server.localstack "$@"
