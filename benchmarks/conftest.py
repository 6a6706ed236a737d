import pytest
import torch


@pytest.fixture(autouse=True)
def _inference_mode():
    with torch.inference_mode():
        yield


@pytest.fixture
def bench_rotating(benchmark):
    """Benchmarks ``fn`` on inputs that rotate through a pool, as an RNN's active set changes every
    step: ``bench_rotating(fn, inputs, theoretical_speedup)``."""

    def run(fn, inputs, theoretical_speedup):
        state = {"i": 0}

        def step():
            state["i"] += 1
            return fn(inputs[state["i"] % len(inputs)])

        benchmark.extra_info.update(theoretical_speedup=theoretical_speedup)
        benchmark(step)

    return run
