#!/usr/bin/env bash
# `make demo` entry: runs scripts/demo.py with the project's venv (PyYAML, Envoy 1.40).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/demo.py "$@"
