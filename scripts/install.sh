#!/usr/bin/env bash
# Installs evsparse and what it needs into the current Python environment.
#   scripts/install.sh [EXTRA]   EXTRA: test | bench (optional-dependency groups of pyproject.toml)
# torch 2.13.0 (the CPU build on this machine's disk; the package accepts 2.13-2.15); the operators are
# built against that installed torch, hence --no-build-isolation (an isolated build would pull a
# multi-GB CUDA torch).
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
pins=("torch==2.13.0" "scikit-build-core==1.1.2" "ninja>=1.11" "numpy>=1.26")
# The Triton the suite is tested with (the [test] extra allows a range, so CUDA builds of torch keep theirs).
[ "$extra" = test ] && pins+=("triton==3.6.0")
python -m pip install -q "${pins[@]}"
spec="."
[ -n "$extra" ] && spec=".[${extra}]"
python -m pip install -q --no-build-isolation "$spec"
