#!/usr/bin/env bash
# Tests the wheels in dist/ as installed, not the source tree: each goes into a fresh environment that
# has only torch and the test dependencies, and the suite runs from a copy of tests/ outside the source
# tree (a copy of it without python/) with no C++ compiler on PATH (tests that need one, e.g. for torch.compile's C++ code, skip).
#   scripts/test_wheels.sh RUN...        RUN = ARCH:TORCH[:PYTEST_ARGS], e.g.
#     x86_64:2.13.0      the local CPU torch           x86_64:2.14.1   a CUDA build from the index
#     aarch64:2.13.0:"test_sparse_linear.py -x"        (under qemu, in an arm64 Debian root)
#     x86_64-py3.13:2.15.0   another CPython (python3.13 on PATH) for the same py3-none wheel
#     sdist:2.13.0        the sdist built from source in a fresh venv (a compiler is needed for this one)
#   scripts/test_wheels.sh --smoke       CI's fast check of dist/host (build_wheels.sh host): torch 2.13.0,
#                                        import + one product
# Appends one line per run to build/wheel-tests.log: arch, torch, pytest's summary, seconds.
# x86_64: a CUDA build of torch imports on a CPU-only machine once its nvidia-* wheels are installed
# (pip does that; the GPU is never touched). aarch64: the index's torch wheels are CUDA builds too, but
# it has no aarch64 cuDNN, so the root gets stub CUDA libraries (scripts/cuda_stubs.py) and an arm64
# /proc/cpuinfo (qemu-user shows the host's, which torch's cpuinfo cannot parse).
set -euo pipefail
cd "$(dirname "$0")/.."
src="$PWD"
log="$src/build/wheel-tests.log"
mkdir -p build
# aarch64 (pip --target cannot read extras from the wheel): pyproject.toml's [test] extra without
# triton, whose interpreter-mode tests are not in the aarch64 subsets.
test_deps=("pytest==9.0.3" "hypothesis==6.155.2" "pytest-benchmark==5.2.3" "scipy==1.17.1" "numpy>=1.26")
root="${EVSPARSE_ARM64_ROOT:-$src/build/arm64-root}"

copy_tree() {  # the source tree without the package (python/), so the tests import the installed wheel
  mkdir -p "$1/tree"
  (cd "$src" && git ls-files | grep -v '^python/' | tar -cf - -T -) | tar -xf - -C "$1/tree"
}

nocc_path() {  # a PATH with the tools the suite runs, and no compiler
  local bin="$1/bin-nocc"
  mkdir -p "$bin"
  for tool in sh bash env readelf uname cat ls rm mkdir cp; do
    [ -x "$(command -v $tool)" ] && ln -sf "$(command -v $tool)" "$bin/$tool"
  done
  echo "$bin"
}

run_x86_64() {  # run_x86_64 TORCH PYTEST_ARGS...   ($py: the CPython to use, default python)
  local torch_version="$1"; shift
  local work; work=$(mktemp -d /tmp/evsparse-wheel-XXXX)
  "${py:-python}" -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install -q "torch==$torch_version"
  # The wheel with its own [test] extra (torch is already there and within the wheel's range).
  local wheel; wheel=$(ls "$src"/dist/evsparse-*manylinux*_x86_64.whl)
  "$work/venv/bin/python" -m pip install -q "$wheel[test]"
  "$work/venv/bin/python" -c "import torch; assert torch.__version__.startswith('$torch_version'), torch.__version__"
  copy_tree "$work"
  (cd "$work/tree/tests" && PATH="$work/venv/bin:$(nocc_path "$work")" CXX=/nonexistent \
     "$work/venv/bin/python" -m pytest -q -rs -p no:cacheprovider "$@")
}

run_sdist() {  # run_sdist TORCH PYTEST_ARGS...: pip builds the sdist against that torch, then the suite
  local torch_version="$1"; shift
  local work; work=$(mktemp -d /tmp/evsparse-sdist-XXXX)
  "${py:-python}" -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install -q "torch==$torch_version" "scikit-build-core==1.1.2" "ninja>=1.11"
  local sdist; sdist=$(ls "$src"/dist/evsparse-*.tar.gz)
  "$work/venv/bin/python" -m pip install -q --no-build-isolation "$sdist[test]"
  copy_tree "$work"
  (cd "$work/tree/tests" && "$work/venv/bin/python" -m pytest -q -rs -p no:cacheprovider "$@")
}

arm64_root() {  # an arm64 Debian root with Python 3.11 (debootstrap's first stage, packages unpacked)
  [ -x "$root/usr/bin/python3.11" ] && return
  debootstrap --foreign --arch=arm64 --variant=minbase --include=python3.11,libpython3.11-stdlib,libgomp1 \
    bookworm "$root" http://deb.debian.org/debian
  for deb in "$root"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$root"; done
  mkdir -p "$root/proc"
  for cpu in 0 1; do  # a Neoverse N1, as qemu -cpu neoverse-n1 runs it
    printf 'processor\t: %s\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' $cpu
  done > "$root/proc/cpuinfo"
}

run_aarch64() {  # run_aarch64 TORCH PYTEST_ARGS...
  local torch_version="$1"; shift
  arm64_root
  local site="$root/opt/torch-$torch_version" stubs="$root/opt/cuda-stubs-$torch_version"
  local pip=(python -m pip install -q --target "$site" --platform manylinux_2_28_aarch64
             --platform manylinux_2_24_aarch64 --platform manylinux_2_17_aarch64 --only-binary=:all:
             --python-version 3.11 --implementation cp)
  if [ ! -d "$site/torch" ]; then
    "${pip[@]}" --no-deps "torch==$torch_version"
    "${pip[@]}" filelock "typing-extensions>=4.10" "setuptools>=77" "sympy>=1.13.3" networkx jinja2 fsspec "${test_deps[@]}"
  fi
  [ -d "$stubs" ] || python "$src/scripts/cuda_stubs.py" "$site/torch" "$root" "$stubs" >/dev/null
  rm -rf "$site/evsparse" "$site"/evsparse-*.dist-info
  "${pip[@]}" --no-deps --upgrade "$src"/dist/evsparse-*manylinux*_aarch64.whl
  # The arm64 Python as a host executable (no binfmt_misc here): sys.executable names it, so the suite's
  # own subprocesses (python -m pytest, python -c) run under qemu too.
  local python="$root/opt/python3-qemu"
  printf '#!/bin/sh\nexec %s -cpu neoverse-n1 -L %s -0 %s %s "$@"\n' "$(command -v qemu-aarch64)" "$root" "$python" \
    "$root/usr/bin/python3.11" > "$python"
  chmod +x "$python"
  local work; work=$(mktemp -d /tmp/evsparse-wheel-XXXX)
  copy_tree "$work"
  (cd "$work/tree/tests" && LD_LIBRARY_PATH="$stubs" PYTHONPATH="$site" PATH="$(nocc_path "$work")" CXX=/nonexistent \
     HOME=/tmp "$python" -m pytest -q -rs -p no:cacheprovider "$@")
}

if [ "${1:-}" = --smoke ]; then
  work=$(mktemp -d /tmp/evsparse-wheel-XXXX)
  python -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install -q "torch==2.13.0" "numpy>=1.26"
  "$work/venv/bin/python" -m pip install -q --no-deps "$src"/dist/host/evsparse-*manylinux*_x86_64.whl
  cd "$work" && EVSPARSE_VENV="$work/venv" PATH="$work/venv/bin:$(nocc_path "$work")" "$work/venv/bin/python" - <<'PY'
import os, torch, evsparse
w, m = torch.randn(96, 64), torch.rand(96, 64) < 0.3
x = torch.randn(3, 64).relu()
got = evsparse.sparse_linear(x, evsparse.pack(w, m, "sparse"))
torch.testing.assert_close(got, torch.nn.functional.linear(x, w * m))
assert evsparse.__file__.startswith(os.environ["EVSPARSE_VENV"]), evsparse.__file__  # the wheel, not the tree
print("wheel smoke test passed:", evsparse.library_path(), evsparse.build_info()["isa_active"])
PY
  exit 0
fi

for spec in "$@"; do
  IFS=: read -r arch torch_version args <<<"$spec"
  py=""
  case "$arch" in *-py*) py="python${arch#*-py}"; arch="${arch%%-py*}" ;; esac
  start=$(date +%s)
  set +e
  out=$(eval "run_$arch $torch_version $args" 2>&1 | tee /dev/stderr | tail -1)
  rc=$?
  set -e
  pyv=$([ "$arch" = aarch64 ] && echo 3.11 || "${py:-python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  echo "$(date -u +%FT%TZ) $arch python $pyv torch $torch_version [${args:-full suite}]: $out ($(( $(date +%s) - start )) s)" | tee -a "$log"
done
