#!/usr/bin/env bash
# The build-time parts of every supported torch release for this machine's platform (cibuildwheel's
# before-build): OUT/<major.minor>/torch/{include,lib,version.py}.
#   scripts/fetch_torch_sdks.sh OUT [VERSIONS]      (default: 2.13.0 2.14.1 2.15.0)
set -euo pipefail
cd "$(dirname "$0")/.."
out="$1"
arch=$(uname -m)
for version in ${2:-2.13.0 2.14.1 2.15.0}; do
  [ -f "$out/${version%.*}/torch/version.py" ] && continue
  python -m pip download -q --no-deps --only-binary=:all: --platform "manylinux_2_28_$arch" --python-version 3.11 \
    "torch==$version" -d build/torch-wheels/$arch
  bash scripts/torch_sdk.sh "$(ls build/torch-wheels/$arch/torch-"$version"[-+]*.whl | head -1)" "$out/${version%.*}"
done
