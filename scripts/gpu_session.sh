#!/usr/bin/env bash
# What a session with an NVIDIA GPU owes the Triton kernels, in one command: build against the torch
# that is installed there (a CUDA build; the pyproject's torch pin is the CPU wheel's, hence
# --no-deps), run every Triton test on CUDA tensors, then the GPU report.
#
#   bash scripts/gpu_session.sh [OUTDIR]        # default benchmarks/results/gpu-YYYY-MM-DD
#
# Each stage's output goes to OUTDIR (env.txt, tests.txt, report.md/json, bench.log); a failing test
# stage does not stop the report, and the exit status is the tests'.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/gpu-$(date +%F)}
mkdir -p "$out"

pip install --no-build-isolation --no-deps -q . 2>&1 | grep -v "Running pip as the 'root' user" | tail -5
{
  python -c "import torch, triton, evsparse; print('torch', torch.__version__, '| triton', triton.__version__, \
'| evsparse', evsparse.__version__, '|', torch.cuda.get_device_name())"
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv 2>/dev/null
} 2>&1 | tee "$out/env.txt"

# On a GPU the Triton tests run on CUDA tensors through the CUDA key (-m gpu selects the GPU-only ones too).
(cd tests && python -m pytest -q -p no:cacheprovider -m "gpu or not gpu" test_triton.py test_triton_recurrent.py \
  test_triton_deterministic.py test_triton_tuning.py test_triton_compile.py test_readme.py) 2>&1 | tee "$out/tests.txt"
tests_rc=${PIPESTATUS[0]}

evsparse-gpu-bench --out "$out" 2>&1 | tee "$out/bench.log"
exit "$tests_rc"
