#!/usr/bin/env bash
# The build-time parts of every supported torch release for one platform: OUT/<major.minor>/torch/
# {include,lib,version.py}, unpacked (scripts/torch_sdk.sh) from the torch wheel found in
# $EVSPARSE_TORCH_WHEELS/<arch> (default build/torch-wheels) or downloaded from PyPI into it.
# Used by scripts/build_wheels.sh and as cibuildwheel's before-build.
#   scripts/fetch_torch_sdks.sh OUT [ARCH] [VERSIONS]      (default: this machine's; 2.13.0 2.14.1 2.15.0)
set -euo pipefail
cd "$(dirname "$0")/.."
out="$1"
arch="${2:-$(uname -m)}"
wheels="${EVSPARSE_TORCH_WHEELS:-build/torch-wheels}/$arch"
for version in ${3:-2.13.0 2.14.1 2.15.0}; do
  [ -f "$out/${version%.*}/torch/version.py" ] && continue
  found=$(ls "$wheels"/torch-"$version"[-+]*"_$arch.whl" 2>/dev/null | head -1 || true)
  if [ -z "$found" ]; then
    python -m pip download -q --no-deps --only-binary=:all: --platform "manylinux_2_28_$arch" \
      --python-version 3.11 "torch==$version" -d "$wheels"
    found=$(ls "$wheels"/torch-"$version"[-+]*"_$arch.whl" | head -1)
  fi
  bash scripts/torch_sdk.sh "$found" "$out/${version%.*}" >/dev/null
done
