"""layout="timed": both layouts timed on an example input, the fastest kept (pack, SparseLinear, sparsify)."""

import itertools
import time

import pytest
import torch

import evsparse
import evsparse.layout as layout_timing
from evsparse import prune
from evsparse.nn import EGRU, SparseLinear, SparseLinearRNN


class Rig(list):
    """The per-layer winners to hand out, in order; ``model_winners`` for the whole-model stage (empty:
    the per-layer choice, its first candidate, wins) and ``model_results`` (per model stage, each
    candidate's output of one stream step)."""

    def __init__(self):
        super().__init__()
        self.model_winners, self.model_results = [], []


def is_model_stage(methods) -> bool:
    first = next(iter(methods))
    return isinstance(first, tuple) and isinstance(first[0], tuple)  # per group, its layouts


def rigged_model_stage(rig, methods):
    rig.model_results.append({c: fn(pool[0]).clone() for c, (fn, pool) in methods.items()})
    winner = rig.model_winners.pop(0) if rig.model_winners else next(iter(methods))
    if isinstance(winner, dict):  # explicit times, the rest slow
        return {c: winner.get(c, 1.0) for c in methods}
    return {c: (1e-6 if c == winner else 2e-6) for c in methods}


@pytest.fixture
def rigged_timer(monkeypatch):
    """Replaces the timer: every candidate runs once (its result kept by combination), and the
    combination named next in ``winners`` gets the lowest time; the whole-model stage: see :class:`Rig`.
    Returns (winners, results)."""
    winners, results = Rig(), []

    def fake_time_interleaved(methods, rounds, sync=None):
        if is_model_stage(methods):
            return rigged_model_stage(winners, methods)
        winner = winners.pop(0)
        outs = {}
        for combo, (fn, inputs) in methods.items():
            outs[combo] = fn(inputs[0])
        results.append(outs)
        if isinstance(winner, dict):  # explicit times, the rest slow
            return {combo: winner.get(combo, 1.0) for combo in methods}
        return {combo: (1e-6 if combo == winner else 2e-6 + 1e-7 * i) for i, combo in enumerate(methods)}

    monkeypatch.setattr(layout_timing, "time_interleaved", fake_time_interleaved)
    return winners, results


def _pruned_weight(out, inp, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out, inp, generator=g) * (torch.rand(out, inp, generator=g) < density)


@pytest.mark.parametrize("winner", ["dense", "sparse"])
def test_pack_keeps_the_layout_that_timed_fastest(rigged_timer, winner):
    winners, results = rigged_timer
    winners.append((winner,))
    w, x = _pruned_weight(48, 40, 0.3), torch.randn(3, 40) * (torch.rand(3, 40) < 0.2)
    pw = evsparse.pack(w, layout="timed", example_input=x)
    assert pw.layout == winner
    assert torch.equal(pw.to_dense(), w)
    assert set(results[0]) == {("dense",), ("sparse",)}  # both layouts ran the example's product
    for y in results[0].values():
        torch.testing.assert_close(y, x @ w.T, rtol=1e-5, atol=1e-5)


def test_auto_layouts_stay_unless_another_combination_is_clearly_faster(rigged_timer):
    winners, _ = rigged_timer
    w, x = _pruned_weight(40, 30, 0.5), torch.randn(30)  # auto: dense
    winners.append({("sparse",): 1.0e-6, ("dense",): 1.0e-6 * (1 + layout_timing.MARGIN) * 0.999})
    assert evsparse.pack(w, layout="timed", example_input=x).layout == "dense"
    winners.append({("sparse",): 1.0e-6, ("dense",): 1.0e-6 * (1 + layout_timing.MARGIN) * 1.001})
    assert evsparse.pack(w, layout="timed", example_input=x).layout == "sparse"


def test_pack_timed_on_this_machine_gives_a_correct_weight():
    w, mask = _pruned_weight(96, 64, 1.0), torch.rand(96, 64) < 0.2
    x = torch.randn(64) * (torch.rand(64) < 0.1)
    pw = evsparse.pack(w, mask, layout="timed", example_input=x)
    assert pw.layout in ("dense", "sparse")
    torch.testing.assert_close(evsparse.sparse_linear(x, pw), (w * mask) @ x, rtol=1e-5, atol=1e-5)
    layer = SparseLinear.from_module(torch.nn.Linear(64, 96), mask=mask, layout="timed", example_input=x)
    assert layer.layout in ("dense", "sparse")


def _assert_the_rule_chose(choice, auto_layouts):
    """Every combination was timed, and the one kept is the fastest or auto's within the margin."""
    seconds = choice.seconds
    assert set(seconds) == set(itertools.product(("dense", "sparse"), repeat=len(auto_layouts)))
    assert all(s > 0 for s in seconds.values())
    fastest = min(seconds, key=seconds.get)
    assert choice.layouts == fastest or (
        choice.layouts == auto_layouts and seconds[auto_layouts] <= seconds[fastest] * (1 + layout_timing.MARGIN))


def test_the_choice_is_the_fastest_of_every_combination_timed():
    egru = EGRU(24, 32, num_layers=2, thr_mean=0.05).eval()
    masks = prune.global_magnitude(egru, sparsity=0.8)
    xs = torch.randn(12, 1, 24)
    sparse = egru.sparsify(masks, layout="timed", example_input=xs)
    auto = egru.sparsify(masks).layouts
    for k, choice in enumerate(sparse.layout_choices):
        assert choice.layouts == sparse.layouts[k]
        _assert_the_rule_chose(choice, auto[k])
        assert "us *" in str(choice)
    with torch.inference_mode():
        torch.testing.assert_close(sparse(xs)[0], egru.sparsify(masks)(xs)[0])


def test_egru_layers_take_their_own_combinations(rigged_timer):
    winners, results = rigged_timer
    winners += [("dense", "sparse"), ("sparse", "dense")]
    egru = EGRU(16, 16, num_layers=2, thr_mean=0.05, batch_first=True).eval()  # square: a wrong input would run
    masks = prune.global_magnitude(egru, sparsity=0.7)
    xs = torch.randn(2, 9, 16)  # batch_first: [B, T, in]
    sparse = egru.sparsify(masks, layout="timed", example_input=xs)
    assert sparse.layouts == [("dense", "sparse"), ("sparse", "dense")]
    assert sparse.layout_choices[1].layouts == ("sparse", "dense")
    assert egru.sparsify(masks).layout_choices == [None, None]
    prune.apply_masks(egru, masks)
    with torch.inference_mode():
        expected, _ = egru(xs)
        torch.testing.assert_close(sparse(xs)[0], expected, rtol=1e-5, atol=1e-5)
    # layer 1 was timed on layer 0's output (time-major): each of its combinations gave the module's output
    assert len(results[1]) == 4
    for ys, _, _ in results[1].values():
        torch.testing.assert_close(ys.transpose(0, 1), expected, rtol=1e-5, atol=1e-5)


def test_linear_rnn_layers_take_their_own_combinations(rigged_timer):
    winners, _ = rigged_timer
    winners += [("sparse", "sparse"), ("dense", "sparse")]
    rnn = SparseLinearRNN(12, 8, 12, num_layers=2, complex=True)
    masks = prune.global_magnitude(rnn, sparsity=0.6)
    xs = torch.relu(torch.randn(10, 2, 12))
    packed = rnn.sparsify(masks, layout="timed", example_input=xs)
    assert packed.layouts == [("sparse", "sparse"), ("dense", "sparse")]
    with torch.inference_mode():
        torch.testing.assert_close(packed(xs)[0], rnn.sparsify(masks, layout="dense")(xs)[0], rtol=1e-5, atol=1e-5)


def test_linear_rnn_timed_on_this_machine():
    rnn = SparseLinearRNN(16, 8, 16, num_layers=1)
    xs = torch.relu(torch.randn(6, 1, 16))
    packed = rnn.sparsify(layout="timed", example_input=xs)
    choice = packed.layout_choices[0]
    assert packed.layouts[0] == choice.layouts
    _assert_the_rule_chose(choice, rnn.sparsify().layouts[0])


def test_timed_layout_needs_an_example_and_only_it_takes_one():
    w, x = torch.randn(8, 6), torch.randn(6)
    with pytest.raises(ValueError, match="needs example_input"):
        evsparse.pack(w, layout="timed")
    with pytest.raises(ValueError, match="only with layout='timed'"):
        evsparse.pack(w, example_input=x)
    egru, rnn = EGRU(6, 4).eval(), SparseLinearRNN(6, 4, 6)
    for module in (egru, rnn):
        with pytest.raises(ValueError, match="needs example_input"):
            module.sparsify(layout="timed")
        with pytest.raises(ValueError, match="only with layout='timed'"):
            module.sparsify(example_input=torch.randn(3, 1, 6))
        with pytest.raises(ValueError, match="3-D"):
            module.sparsify(layout="timed", example_input=torch.randn(6))
        with pytest.raises(ValueError, match="features"):
            module.sparsify(layout="timed", example_input=torch.randn(3, 1, 5))
        with pytest.raises(ValueError, match="float32"):
            module.sparsify(layout="timed", example_input=torch.randn(3, 1, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="x"):
        evsparse.pack(w, layout="timed", example_input=torch.randn(5))  # the product's own check


def test_modules_with_mixed_layouts_step_and_export(rigged_timer):
    """A layer whose two weights have different layouts (as "timed" may choose) streams step by step
    like its sequence forward, and exports with a dynamic length to the same results."""
    winners, _ = rigged_timer
    winners += [("sparse", "dense"), ("dense", "sparse")]
    egru = EGRU(6, 9, thr_mean=0.1).eval()
    rnn = SparseLinearRNN(6, 5, 6).eval()
    xs, xs_long = torch.randn(5, 1, 6), torch.randn(9, 1, 6)
    modules = {"PackedEGRU": egru.sparsify(layout="timed", example_input=xs),
               "PackedLinearRNN": rnn.sparsify(layout="timed", example_input=xs.relu())}
    assert modules["PackedEGRU"].layouts == [("sparse", "dense")]
    assert modules["PackedLinearRNN"].layouts == [("dense", "sparse")]
    for name, mod in modules.items():
        with torch.inference_mode():
            ys, _ = mod(xs_long)
            state, steps = None, []
            for x_t in xs_long:
                y_t, state = mod.step(x_t, state)
                steps.append(y_t)
            torch.testing.assert_close(torch.stack(steps), ys, rtol=1e-6, atol=1e-6, msg=name)
        ep = torch.export.export(mod, (xs,), dynamic_shapes=({0: torch.export.Dim("T", min=1, max=1024)},))
        torch.testing.assert_close(ep.module()(xs_long)[0], mod(xs_long)[0], rtol=0, atol=0, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_timed_layouts_on_cuda_time_the_triton_kernels():
    w, mask = _pruned_weight(384, 128, 1.0).cuda(), (torch.rand(384, 128) < 0.2).cuda()
    x = (torch.randn(128) * (torch.rand(128) < 0.1)).cuda()
    pw = evsparse.pack(w, mask, layout="timed", example_input=x)
    assert pw.device.type == "cuda"
    torch.testing.assert_close(evsparse.sparse_linear(x, pw), (w * mask) @ x, rtol=1e-4, atol=1e-4)
    egru = EGRU(64, 128, num_layers=2, thr_mean=0.1).eval()
    masks = prune.global_magnitude(egru, sparsity=0.8)
    xs = torch.randn(16, 1, 64)
    ref, _ = egru.sparsify(masks)(xs)
    egru.cuda()
    sparse = egru.sparsify({k: m.cuda() for k, m in masks.items()}, layout="timed", example_input=xs.cuda())
    assert all(choice is not None for choice in sparse.layout_choices)
    torch.testing.assert_close(sparse(xs.cuda())[0].cpu(), ref, rtol=1e-4, atol=1e-4)


def test_a_timed_choice_is_reproduced_from_its_layouts(rigged_timer):
    """``.layouts`` passed back as ``layout`` rebuilds the same layouts without timing, so a timed
    module's state_dict loads into it."""
    winners, _ = rigged_timer
    winners += [("sparse", "dense"), ("dense", "dense"), ("dense", "sparse"), ("sparse", "sparse")]
    egru = EGRU(6, 9, num_layers=2, thr_mean=0.1).eval()
    rnn = SparseLinearRNN(6, 5, 6, num_layers=2).eval()
    xs = torch.randn(5, 1, 6)
    for model, example in ((egru, xs), (rnn, xs.relu())):
        timed = model.sparsify(layout="timed", example_input=example)
        again = model.sparsify(layout=timed.layouts)
        assert again.layouts == timed.layouts and again.layout_choices == [None, None]
        again.load_state_dict(timed.state_dict())
        torch.testing.assert_close(again(example)[0], timed(example)[0], rtol=0, atol=0)
    assert not winners  # all four layers were timed, the reproductions not


@pytest.mark.parametrize("layout", [[("dense", "sparse")], [("dense", "sparse")] * 3, [("dense", "timed")] * 2,
                                    [("dense",)] * 2, [("dense", "sparse", "auto")] * 2, [("dense", "bogus")] * 2, 7])
def test_per_layer_layouts_are_checked(layout):
    for model in (EGRU(6, 9, num_layers=2), SparseLinearRNN(6, 5, 6, num_layers=2)):
        with pytest.raises(ValueError, match="pairs"):
            model.sparsify(layout=layout)


@pytest.mark.parametrize("weight_dtype", [None, torch.int8])
def test_s5_timed_picks_the_rigged_winner_per_record_and_equals_the_module(rigged_timer, weight_dtype):
    """S5 plans: one timing per record (encoder: its product; each block: its three weights through a
    one-block plan; decoder), each on the previous record's output; every candidate's output equal to the
    module's record; the rigged winner kept; ``.layouts`` reproduces the choice."""
    from evsparse.nn import S5Stack

    torch.manual_seed(0)
    m = S5Stack(30, 24, 16, 2, 7).eval()
    masks = prune.erk_magnitude(m, 0.8)
    prune.apply_masks(m, masks)
    x = torch.rand(6, 2, 30)
    winners, results = rigged_timer
    winners += [("sparse",), ("dense", "sparse", "dense"), ("sparse", "sparse", "sparse"), ("dense",)]
    packed = m.sparsify(masks, layout="timed", example_input=x, weight_dtype=weight_dtype)
    assert packed.layouts == ["sparse", "dense", "sparse", "dense", "sparse", "sparse", "sparse", "dense"]
    assert [c.layouts for c in packed.layout_choices] == [("sparse",), ("dense", "sparse", "dense"),
                                                          ("sparse",) * 3, ("dense",)]
    assert len(results) == 4 and [len(r) for r in results] == [2, 8, 8, 2]
    for outs in results:  # the candidates of one record agree (int8: up to quantisation of the same values)
        first = next(iter(outs.values()))[0]
        for out in outs.values():
            torch.testing.assert_close(out[0], first, rtol=1e-5, atol=1e-5)
    tol = 1e-5 if weight_dtype is None else 5e-2
    torch.testing.assert_close(packed(x)[0], m(x)[0] if weight_dtype is None else
                               m.sparsify(masks, layout="dense", weight_dtype=weight_dtype)(x)[0], rtol=tol, atol=tol)
    again = m.sparsify(masks, layout=packed.layouts, weight_dtype=weight_dtype)
    torch.testing.assert_close(again(x)[0], packed(x)[0], rtol=0, atol=0)


def test_s5_timed_on_this_machine_and_its_errors():
    from evsparse.nn import S5Stack

    torch.manual_seed(1)
    m = S5Stack(12, 8, 6, 1, 5).eval()
    x = torch.rand(5, 1, 12)
    packed = m.sparsify(layout="timed", example_input=x)
    for choice, auto in zip(packed.layout_choices, [("dense",), ("dense",) * 3, ("dense",)]):
        _assert_the_rule_chose(choice, auto)
    torch.testing.assert_close(packed(x)[0], m(x)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs example_input"):
        m.sparsify(layout="timed")
    with pytest.raises(ValueError, match="only with layout='timed'"):
        m.sparsify(layout="auto", example_input=x)
    with pytest.raises(ValueError, match="float32"):
        m.sparsify(layout="timed", example_input=x.double())


def test_pace_ms_times_the_candidates_paced(monkeypatch):
    """With pace_ms, pack's timed choice comes from the paced timer (at that interval), not the hot one;
    the weight it returns is correct."""
    calls = []

    def fake_time_paced(methods, interval_s, samples):
        calls.append((interval_s, samples))
        for fn, pool in methods.values():
            fn(pool[0])
        return {combo: ((1e-6, 2e-6) if combo == ("sparse",) else (5e-6, 6e-6)) for combo in methods}

    def no_hot(*args, **kwargs):
        raise AssertionError("the hot timer ran although pace_ms was given")

    monkeypatch.setattr(layout_timing, "time_paced", fake_time_paced)
    monkeypatch.setattr(layout_timing, "time_interleaved", no_hot)
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(96, 40, generator=gen)
    mask = torch.rand(96, 40, generator=gen) < 0.9  # auto would keep it dense
    x = torch.randn(40, generator=gen)
    pw = evsparse.pack(w, mask, "timed", example_input=x, pace_ms=8)
    assert calls == [(8e-3, layout_timing.PACED_SAMPLES)] and pw.layout == "sparse"
    torch.testing.assert_close(evsparse.sparse_linear(x, pw), torch.nn.functional.linear(x, w * mask))
    lin = SparseLinear.from_module(torch.nn.Linear(40, 96), mask, layout="timed", example_input=x, pace_ms=2)
    assert calls[-1][0] == pytest.approx(2e-3) and lin.packed.layout == "sparse"


def test_pace_ms_on_this_machine_and_its_errors():
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(64, 32, generator=gen)
    x = torch.randn(2, 32, generator=gen)
    pw = evsparse.pack(w, layout="timed", example_input=x, pace_ms=0.2)
    torch.testing.assert_close(evsparse.sparse_linear(x, pw), torch.nn.functional.linear(x, w))
    for bad in (0, -1.0, float("nan"), float("inf"), "8"):
        with pytest.raises(ValueError, match="pace_ms"):
            evsparse.pack(w, layout="timed", example_input=x, pace_ms=bad)
    with pytest.raises(ValueError, match="pace_ms"):
        evsparse.pack(w, layout="auto", pace_ms=8)


@pytest.mark.parametrize("weight_dtype", [None, torch.int8])
def test_egru_pace_ms_times_one_step_per_call(monkeypatch, weight_dtype):
    """EGRU.sparsify(layout="timed", pace_ms=...) times each layer with the paced timer, each call one step
    (a frame of the example, in turn), and keeps the rigged winner; the module equals the one built
    with those layouts."""
    seen, model_stage, rig = [], [], Rig()
    winners = [("sparse", "dense"), ("dense", "sparse")]

    def fake_time_paced(methods, interval_s, samples):
        assert interval_s == pytest.approx(5e-3)
        if is_model_stage(methods):
            model_stage.append(list(methods))
            return {c: (v, v) for c, v in rigged_model_stage(rig, methods).items()}
        for fn, pool in methods.values():
            for _ in range(3):
                out = fn(pool[0])
                seen.append(out[0].shape[0])  # the op's output steps
        win = winners.pop(0)
        return {combo: ((1e-6, 1e-6) if combo == win else (9e-6, 9e-6)) for combo in methods}

    def no_hot(*args, **kwargs):
        raise AssertionError("the hot timer ran although pace_ms was given")

    monkeypatch.setattr(layout_timing, "time_paced", fake_time_paced)
    monkeypatch.setattr(layout_timing, "time_interleaved", no_hot)
    egru = EGRU(12, 16, num_layers=2, thr_mean=0.05).eval()
    masks = prune.global_magnitude(egru, sparsity=0.7)
    xs = torch.randn(7, 2, 12)
    timed = egru.sparsify(masks, layout="timed", example_input=xs, weight_dtype=weight_dtype, pace_ms=5)
    assert timed.layouts == [("sparse", "dense"), ("dense", "sparse")]
    assert seen and set(seen) == {1}  # every timed call ran one step
    # then whole models, paced too, each a stream step on a frame [B, in]: output [B, H]
    assert len(model_stage) == 1 and model_stage[0][0] == (("sparse", "dense"), ("dense", "sparse"))
    assert all(out.shape == (2, 16) for out in rig.model_results[0].values())
    assert timed.model_choice.pace_s == pytest.approx(5e-3)
    again = egru.sparsify(masks, layout=timed.layouts, weight_dtype=weight_dtype)
    with torch.inference_mode():
        torch.testing.assert_close(timed(xs)[0], again(xs)[0], rtol=0, atol=0)


def test_egru_pace_ms_on_this_machine_and_its_errors():
    egru = EGRU(8, 8, num_layers=1).eval()
    xs = torch.randn(5, 1, 8)
    packed = egru.sparsify(layout="timed", example_input=xs, pace_ms=0.2)
    with torch.inference_mode():
        torch.testing.assert_close(packed(xs)[0], egru(xs)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pace_ms"):
        egru.sparsify(pace_ms=8)
    with pytest.raises(ValueError, match="pace_ms"):
        egru.sparsify(layout="timed", example_input=xs, pace_ms=0)


def test_model_candidates_change_one_group_at_a_time():
    start = (("sparse", "dense"), ("dense", "dense"))
    cands = layout_timing.model_candidates(start)
    assert cands[0] == start and len(cands) == len(set(cands))
    # every combination of either layer with the other kept, plus all-sparse: 1 + 3 + 3 + 1
    assert len(cands) == 8 and (("sparse", "sparse"), ("sparse", "sparse")) in cands
    assert all(sum(a != b for a, b in zip(c, start)) <= 1 for c in cands[:-1])
    s5 = (("dense",), ("dense", "sparse", "dense"), ("sparse",))
    cands = layout_timing.model_candidates(s5)
    for c in [(("sparse",), s5[1], s5[2]), (s5[0], ("dense",) * 3, s5[2]), (s5[0], ("sparse",) * 3, s5[2]),
              (s5[0], ("sparse", "sparse", "dense"), s5[2]), (s5[0], ("dense", "sparse", "sparse"), s5[2]),
              (("dense",), ("dense",) * 3, ("dense",)), (("sparse",), ("sparse",) * 3, ("sparse",))]:
        assert c in cands
    assert len(cands) == len(set(cands)) == 9


def test_egru_model_stage_keeps_the_per_layer_choice_unless_a_model_is_clearly_faster(rigged_timer):
    """After the per-layer choices, whole models are timed stepping their streams on the example's frames:
    every candidate's step gives the same output; a model MARGIN faster replaces the per-layer choice, one
    within the margin does not; the module kept equals the one built with its layouts."""
    winners, _ = rigged_timer
    egru = EGRU(16, 24, num_layers=2, thr_mean=0.05).eval()
    masks = prune.global_magnitude(egru, sparsity=0.7)
    xs = torch.randn(6, 3, 16)
    start = (("sparse", "dense"), ("sparse", "sparse"))
    dense = (("dense", "dense"), ("dense", "dense"))
    for factor, expected in ((1.001, dense), (0.999, start)):
        winners += [start[0], start[1]]
        winners.model_winners.append({start: 1e-6 * (1 + layout_timing.MARGIN) * factor, dense: 1e-6})
        timed = egru.sparsify(masks, layout="timed", example_input=xs)
        assert tuple(tuple(p) for p in timed.layouts) == expected
        choice = timed.model_choice
        assert choice.layouts == expected and choice.pace_s is None and set(choice.seconds) >= {start, dense}
        assert [c.layouts for c in timed.layout_choices] == list(start)  # the per-layer stage's record
        assert "us *" in str(choice) and "hot" in str(choice)
        outs = winners.model_results[-1]
        first = next(iter(outs.values()))
        assert first.shape == (3, 24)
        for out in outs.values():  # one step of each model from the zero state, on the same frame
            torch.testing.assert_close(out, first, rtol=1e-5, atol=1e-5)
        again = egru.sparsify(masks, layout=timed.layouts)
        with torch.inference_mode():
            torch.testing.assert_close(timed(xs)[0], again(xs)[0], rtol=0, atol=0)
    assert egru.sparsify(masks).model_choice is None


def test_s5_model_stage_groups_weights_by_record(rigged_timer):
    from evsparse.nn import S5Stack

    torch.manual_seed(0)
    m = S5Stack(20, 16, 8, 2, 5).eval()
    masks = prune.erk_magnitude(m, 0.8)
    x = torch.rand(4, 2, 20)
    winners, _ = rigged_timer
    per_record = [("sparse",), ("dense", "sparse", "dense"), ("sparse",) * 3, ("dense",)]
    winners += per_record
    pick = (("dense",), ("dense",) * 3, ("dense",) * 3, ("dense",))
    winners.model_winners.append(pick)
    packed = m.sparsify(masks, layout="timed", example_input=x)
    assert packed.model_choice.layouts == pick and packed.layouts == ["dense"] * 8
    assert next(iter(packed.model_choice.seconds)) == tuple(per_record)  # the per-layer choice first
    assert [c.layouts for c in packed.layout_choices] == per_record
    torch.testing.assert_close(packed(x)[0], m.sparsify(masks, layout="dense")(x)[0], rtol=0, atol=0)


def test_s5_pace_ms_on_this_machine():
    """S5Stack.sparsify(layout="timed", pace_ms=...): both stages on the real paced timer (a short interval
    here); the module is correct and records the paced model choice."""
    from evsparse.nn import S5Stack

    torch.manual_seed(2)
    m = S5Stack(10, 8, 6, 1, 4).eval()
    x = torch.rand(5, 1, 10)
    packed = m.sparsify(layout="timed", example_input=x, pace_ms=0.2)
    assert packed.model_choice.pace_s == pytest.approx(2e-4)
    torch.testing.assert_close(packed(x)[0], m(x)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pace_ms"):
        m.sparsify(pace_ms=8)


def test_time_interleaved_opens_every_block_with_untimed_warmup_calls(monkeypatch):
    """Each block of time_interleaved starts with BLOCK_WARMUP_CALLS untimed calls (the ops' threading
    policy uses the workers only after a streak of back-to-back calls), bounded by BLOCK_WARMUP_SECONDS;
    every method's median is still per timed call."""
    from evsparse import timing

    calls = {"a": 0, "b": 0}

    def make(name):
        def fn(_):
            calls[name] += 1
        return fn

    rounds = 3
    out = timing.time_interleaved({"a": (make("a"), [None] * 4), "b": (make("b"), [None] * 4)}, rounds)
    assert set(out) == {"a", "b"} and all(v > 0 for v in out.values())
    assert all(c >= 8 + rounds * (timing.BLOCK_WARMUP_CALLS + 1) for c in calls.values())  # 8: calibration
    slow = {"n": 0}

    def slow_fn(_):
        slow["n"] += 1
        time.sleep(0.005)

    monkeypatch.setattr(timing, "BLOCK_WARMUP_SECONDS", 0.012)
    timing.time_interleaved({"s": (slow_fn, [None])}, 1, block_seconds=1e-3)
    assert slow["n"] <= 2 + 4 + 1  # calibration, a warm-up cut short after ~12 ms, one timed call


def test_model_stage_is_skipped_for_models_too_large_to_time_side_by_side(rigged_timer, monkeypatch):
    """Every candidate module is alive during the model stage: above MODEL_STAGE_MAX_BYTES together it is
    skipped (model_choice None) and the per-layer choice kept, without timing whole models."""
    winners, _ = rigged_timer
    egru = EGRU(16, 24, num_layers=2, thr_mean=0.05).eval()
    masks = prune.global_magnitude(egru, sparsity=0.7)
    xs = torch.randn(6, 1, 16)
    start = [("sparse", "dense"), ("dense", "sparse")]
    one = egru.sparsify(masks, layout=start)
    size = sum(b.numel() * b.element_size() for b in one.buffers())
    monkeypatch.setattr(layout_timing, "MODEL_STAGE_MAX_BYTES", int(size * 2.5))  # room for two models
    winners += start
    winners.model_winners.append((("dense", "dense"), ("dense", "dense")))  # would win, if timed
    timed = egru.sparsify(masks, layout="timed", example_input=xs)
    assert timed.model_choice is None and timed.layouts == start and winners.model_results == []
    assert [c.layouts for c in timed.layout_choices] == start
