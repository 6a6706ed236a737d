#!/usr/bin/env bash
# What a session with an NVIDIA GPU owes the Triton kernels: build against the torch that is installed
# there (a CUDA build; the pyproject's torch pin is the CPU wheel's, hence --no-deps), run every Triton
# test on CUDA tensors, then the GPU report.
#
#   bash scripts/gpu_session.sh [OUTDIR] [STAGE ...] [-- BENCH ARGS]
#
# OUTDIR defaults to benchmarks/results/gpu-YYYY-MM-DD. STAGEs: build, tests, bench (default: all three,
# in that order), and pybench (benchmarks/test_bench_gpu.py, pytest-benchmark, -k from PYBENCH_K). Device time comes in calls of at most 10 minutes, so the stages can be run one call
# each; arguments after -- go to evsparse-gpu-bench (e.g. -- --sizes 8192x24576 --egru-hidden), so the
# sweep can be split across calls too (give each part its own --out there, or its report.md replaces the
# last one; bench.log collects them all). Each stage's output goes to OUTDIR (env.txt, tests.txt,
# report.md/json, bench.log); a failing stage does not stop the next, and the exit status is the last
# failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/gpu-$(date +%F)
if [[ $# -gt 0 && $1 != -- && $1 != build && $1 != tests && $1 != bench && $1 != pybench ]]; then out=$1; shift; fi
stages=()
while [[ $# -gt 0 && $1 != -- ]]; do stages+=("$1"); shift; done
[[ $# -gt 0 ]] && shift  # the --
bench_args=("$@")
[[ ${#stages[@]} -eq 0 ]] && stages=(build tests bench)
mkdir -p "$out"
rc=0

for stage in "${stages[@]}"; do
  case $stage in
    build)
      pip install --no-build-isolation --no-deps -q . 2>&1 | grep -v "Running pip as the 'root' user" | tail -5
      {
        python -c "import torch, triton, evsparse; print('torch', torch.__version__, '| triton', triton.__version__, \
'| evsparse', evsparse.__version__, '|', torch.cuda.get_device_name()); print(evsparse.build_info())"
        nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv 2>/dev/null
      } 2>&1 | tee "$out/env.txt"
      [[ ${PIPESTATUS[0]} -eq 0 ]] || rc=1
      ;;
    tests)
      # On a GPU the Triton tests run on CUDA tensors through the CUDA key (-m gpu selects the GPU-only
      # ones too). Autotuning is off here (one fixed tile per kernel) to spend device time on checks, not
      # on timing candidates: test_triton_tuning.py launches every candidate tile on its own and runs
      # the autotuner itself.
      (cd tests && EVSPARSE_GPU_AUTOTUNE=0 python -m pytest -q -p no:cacheprovider -m "gpu or not gpu" \
        test_triton.py test_triton_recurrent.py test_triton_deterministic.py test_triton_tuning.py \
        test_triton_compile.py test_pt2.py test_docs.py test_layout_timing.py test_stack_step.py) 2>&1 \
        | tee "$out/tests.txt"
      [[ ${PIPESTATUS[0]} -eq 0 ]] || rc=1
      ;;
    bench)
      evsparse-gpu-bench --out "$out" "${bench_args[@]}" 2>&1 | tee -a "$out/bench.log"
      [[ ${PIPESTATUS[0]} -eq 0 ]] || rc=1
      ;;
    pybench)
      python -m pytest -q -p no:cacheprovider benchmarks/test_bench_gpu.py -k "${PYBENCH_K:-1024x3072 or egru}" \
        --benchmark-json "$out/pybench.json" --benchmark-group-by=func \
        2>&1 | tee "$out/pybench.txt"
      [[ ${PIPESTATUS[0]} -eq 0 ]] || rc=1
      ;;
    *) echo "gpu_session.sh: unknown stage '$stage' (build, tests, bench, pybench)" >&2; exit 2 ;;
  esac
done
exit "$rc"
