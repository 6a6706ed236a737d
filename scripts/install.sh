#!/usr/bin/env bash
# Installs evsparse and what it needs into the current Python environment.
#   scripts/install.sh [EXTRA]   EXTRA: test | bench (optional-dependency groups of pyproject.toml)
# torch is pinned to 2.13.0 (CPU); the extension is built against that installed torch, hence
# --no-build-isolation (an isolated build would pull a multi-GB CUDA torch).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
python -m pip install -q "torch==2.13.0" "scikit-build-core==1.1.2" "pybind11==3.1.0" "ninja>=1.11" "numpy>=1.26"
spec="."
[ -n "$extra" ] && spec=".[${extra}]"
python -m pip install -q --no-build-isolation "$spec"
