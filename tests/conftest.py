import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import evsparse

# "ci" keeps the whole suite within a few minutes on 2 cores; "thorough" for local soak runs.
settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
)
settings.register_profile("thorough", max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("EVSPARSE_HYPOTHESIS_PROFILE", "ci"))

SUPPORTED_ISAS = evsparse.build_info()["isa_supported"]


@pytest.fixture(params=SUPPORTED_ISAS)
def isa(request):
    """Runs a test once per instruction set this CPU supports (scalar included)."""
    previous = evsparse.get_isa()
    evsparse.set_isa(request.param)
    yield request.param
    evsparse.set_isa(previous)


@pytest.fixture
def threads():
    """Restores the thread count a test changes."""
    previous = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(previous)


@pytest.fixture
def run_benchmarks_once():
    """Runs benchmark files of benchmarks/ in a pytest of their own, each case once
    (--benchmark-disable), from the repository root: ``run(files, *pytest_args, env=None)`` asserts it
    passed and returns its output."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def run(files, *args, env=None):
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
                              *args, *files], cwd=root, capture_output=True, text=True, timeout=600,
                             env=None if env is None else {**os.environ, **env})
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
        return out.stdout

    return run
