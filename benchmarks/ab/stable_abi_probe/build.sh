#!/usr/bin/env bash
# The probe behind docs/install.md's "Why not the Stable ABI": the same do-nothing ops registered on
# the LibTorch Stable ABI (stable_ops.cpp) and on the libtorch C++ API (legacy_ops.cpp), timed from
# Python per call (bench.py), and the cost of a Python autograd formula (python_autograd.py).
#   bash benchmarks/ab/stable_abi_probe/build.sh && cd benchmarks/ab/stable_abi_probe && python bench.py
set -euo pipefail
cd "$(dirname "$0")"
TL=$(python -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
TI="$TL/../include"
g++ -O2 -std=c++17 -shared -fPIC -DTORCH_TARGET_VERSION=0x020a000000000000 -I"$TI" stable_ops.cpp \
  -o libstable_ops.so -L"$TL" -ltorch_cpu -Wl,-rpath,"$TL"
g++ -O2 -std=c++17 -w -shared -fPIC -D_GLIBCXX_USE_CXX11_ABI=1 -I"$TI" -I"$TI/torch/csrc/api/include" legacy_ops.cpp \
  -o liblegacy_ops.so -L"$TL" -ltorch_cpu -lc10 -Wl,-rpath,"$TL"
