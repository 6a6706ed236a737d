#!/usr/bin/env bash
# The main job: installs evsparse with its benchmark dependencies, then runs the benchmark report
# (writes bench-out/report.{md,json,png}). Extra arguments go to evsparse-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh bench
evsparse-bench "$@"
