#!/usr/bin/env bash
# The test command: installs evsparse with its test dependencies, then runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
# Run from a neutral directory so the installed package (with its compiled extension) is imported.
cd tests && python -m pytest -q -p no:cacheprovider "$@"
