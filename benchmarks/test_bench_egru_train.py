"""One EGRU layer's training step (forward + backward over a [T, B] batch, pytest-benchmark): the
fused op (``EGRU``'s default on the CPU) against the same module's Python loop over time and
``torch.nn.GRU``, at PTB-small's layer sizes with thresholds calibrated to 12% activity
(``evsparse.bench.egru_train``, which the report runs too).

    pytest benchmarks/test_bench_egru_train.py --benchmark-group-by=param:case
"""

import functools

import pytest
import torch

from evsparse.bench.egru_train import DEFAULT_CASES, FUSED, GRU, LOOP, build_methods


@functools.lru_cache(maxsize=None)
def _methods(case):
    return build_methods(*case, activity=0.12)[0]


@pytest.mark.parametrize("method", [FUSED, LOOP, GRU])
@pytest.mark.parametrize("case", DEFAULT_CASES[:2], ids=lambda c: "in{}-H{}-B{}-T{}".format(*c))
def test_egru_training_step(benchmark, case, method):
    with torch.inference_mode(False):  # (conftest puts every benchmark in inference mode; training needs autograd)
        step = _methods(case)[method]
        benchmark(step)


@pytest.mark.parametrize("method", ["evsparse.functional.dropconnect", "F.dropout"])
@pytest.mark.parametrize("shape", [(1152, 384), (768, 256), (4050, 1350)], ids=lambda s: "{}x{}".format(*s))
def test_dropconnect_mask(benchmark, shape, method):
    """DropConnect on a recurrent weight (PTB-small's two layers, a paper-scale one), as every training
    forward draws it: the counter-based op against F.dropout's Bernoulli draw."""
    from evsparse.functional import dropconnect

    w = torch.randn(*shape)
    fn = (lambda: dropconnect(w, 0.3)) if method.startswith("evsparse") else (
        lambda: torch.nn.functional.dropout(w, 0.3, training=True))
    benchmark(fn)
