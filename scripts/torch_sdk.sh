#!/usr/bin/env bash
# Unpacks what building the operator library against a torch release needs from its wheel: the headers,
# version.py and the three libraries it links (libc10, libtorch_cpu, libtorch). No install, no CUDA
# libraries: a CUDA build of torch serves as well as a CPU one (the CPU libraries' ABI is the same).
#   scripts/torch_sdk.sh TORCH_WHEEL OUT_DIR      -> OUT_DIR/torch/{include,lib,version.py}
set -euo pipefail
wheel="$1"
out="$2"
mkdir -p "$out"
python - "$wheel" "$out" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1:]
want = ("torch/include/", "torch/version.py", "torch/lib/libc10.so", "torch/lib/libtorch_cpu.so", "torch/lib/libtorch.so")
with zipfile.ZipFile(wheel) as z:
    z.extractall(out, [n for n in z.namelist() if n.startswith(want)])
PY
echo "$out/torch ($(grep -o "__version__ = '[^']*'" "$out/torch/version.py"))"
