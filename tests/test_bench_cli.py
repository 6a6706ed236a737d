"""The report command (evsparse-bench / python -m evsparse.bench) on a tiny sweep: it runs, writes the
three files, and its numbers are consistent with each other (timings themselves are not asserted)."""

import importlib.util
import json

import pytest
import torch

import evsparse
from evsparse import bench


def test_report_command_tiny_sweep(tmp_path, capsys):
    out = tmp_path / "report"
    rc = bench.main(["--sizes", "48x80", "--activity", "0.5", "0.125", "--density", "1", "0.25", "--reps", "1",
                     "--egru-hidden", "16", "--lrnn-width", "16", "--timed-hidden", "16", "--stack-width", "16",
                     "--s5-k", "0.125", "--stack-layers", "1", "3", "--paced-samples", "3", "--paced-interval-ms", "1",
                     "--cold-points", "48x80@0.5@0.25", "--cold-calls", "2", "--train-cases", "8:12:3:5",
                     "--block-points", "48x80@0.5@0.25", "--out", str(out), "--quiet"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    if importlib.util.find_spec("matplotlib") is not None:  # the plot is optional (bench extra)
        assert (out / "report.png").stat().st_size > 0
    rows = report["rows"]
    assert [(r["activity"], r["density"]) for r in rows] == [(0.5, 1.0), (0.125, 1.0), (0.5, 0.25), (0.125, 0.25)]
    for r in rows:
        t = r["times_us"]
        assert all(v > 0 for v in t.values())
        assert r["speedup_vs_dense"] == pytest.approx(t["dense_F.linear"] / t["evsparse"])
        assert r["speedup_vs_best_dense"] == pytest.approx(min(t["dense_F.linear"], t["dense_x@W^T"]) / t["evsparse"])
        assert r["realisation"] == pytest.approx(r["speedup_vs_dense"] / r["theoretical_speedup"])
        if r["density"] == 1.0:  # exactly k = activity * 48 inputs active, every weight nonzero
            assert r["theoretical_speedup"] == pytest.approx(1 / r["activity"])
        else:  # random 25% weights: about 4x more on top
            assert 2.5 / r["activity"] < r["theoretical_speedup"] < 6.5 / r["activity"]
        assert f"| 48x80 | {r['activity']:.0%} | {r['density']:.0%} |" in md
    assert [e["hidden"] for e in report["egru"]] == [16, 16]
    assert [e["width"] for e in report["linear_rnn"]] == [16, 16]
    (s5,) = report["s5"]
    assert (s5["k"], s5["d_model"], s5["state_size"]) == (0.125, 24, 32)
    assert s5["effective_macs_sparse_model"] < s5["effective_macs_dense_model"] <= s5["dense_macs"]
    assert s5["weight_bytes"]["plan, 90% ERK, int8"] < s5["weight_bytes"]["plan, 90% ERK"] < s5["weight_bytes"]["plan, dense"]
    assert s5["weight_bytes"]["plan, 90% ERK, 16x1 blocks"] < s5["weight_bytes"]["plan, dense"]
    assert s5["effective_macs_block_model"] < s5["effective_macs_dense_model"]
    assert all(v > 0 for v in s5["hot_us"].values()) and set(s5["paced_us"]) == set(s5["hot_us"])
    assert "## S5 denoiser step" in md
    (tr,) = report["egru_train"]
    assert (tr["input"], tr["hidden"], tr["batch"], tr["steps"]) == (8, 12, 3, 5)
    assert set(tr["us_per_token"]) == {"EGRU fused op", "EGRU Python loop", "nn.GRU"}
    assert all(v > 0 for v in tr["us_per_token"].values()) and 0 <= tr["activity"] <= 1 and 0 <= tr["dy_needed"] <= 1
    assert set(tr["dropconnect_ms"]) == {"evsparse", "F.dropout"} and all(v > 0 for v in tr["dropconnect_ms"].values())
    assert "## EGRU training step" in md
    for r in report["timed_layout"]:
        u = r["us_per_step"]
        assert r["timed_vs_auto"] == pytest.approx(u["auto"] / u["timed"])
        assert r["timed_vs_best_forced"] == pytest.approx(min(u["dense"], u["sparse"]) / u["timed"])
        assert tuple(r["auto"]) == (("sparse",) * 2 if r["density"] <= evsparse.AUTO_SPARSE_MAX_DENSITY else ("dense",) * 2)
        assert len(r["timed"]) == 2 and set(r["timed"]) <= {"dense", "sparse"}
    assert [(r["hidden"], r["density"]) for r in report["timed_layout"]] == [(16, 0.15), (16, 0.3)]
    assert "## Layout chosen by timing" in md
    stack = report["stack_step"]
    assert [(r["family"], r["width"], r["layers"]) for r in stack] == [
        ("EGRU", 16, 1), ("EGRU", 16, 3), ("linear RNN", 16, 1), ("linear RNN", 16, 3)]
    for r in stack:
        t = r["times_us"]
        assert r["stack_vs_loop"] == pytest.approx(t["one op per layer"] / t["module step"])
        assert r["stack_vs_dense"] == pytest.approx(t["dense PyTorch"] / t["module step"])
        assert len(r["activity"]) == r["layers"] and all(0 <= a <= 1 for a in r["activity"])
    assert "## Whole-model step, batch 1" in md
    paced = report["paced"]
    assert [(r["case"], r["method"]) for r in paced][:4] == [("sparse_linear 1024x3072, 10% x 15%", m)
                                                          for m in ("evsparse", "evsparse, 16x1 block-pruned",
                                                                    "F.linear", "x @ W^T")]
    assert len(paced) == 7 and all(0 < r["paced_median_us"] <= r["paced_p99_us"] and r["hot_us"] > 0 for r in paced)
    assert "## Paced streaming (latency per call)" in md
    cold = report["cold"]
    assert [r["method"] for r in cold] == ["evsparse float32", "evsparse float16", "evsparse int8", "evsparse, x = 0",
                                           "F.linear", "x @ W^T"]
    for r in cold:
        assert r["warm_us"] > 0 and r["cold_us"] > 0 and (r["bytes"] > 0) == (r["method"] != "evsparse, x = 0")
        assert r["cold_GBps"] == pytest.approx(r["bytes"] / r["cold_us"] / 1e3)
    by = {r["method"]: r for r in cold}
    assert all(by[f"evsparse {dt}"]["layout"] in ("dense", "sparse") for dt in ("float32", "float16", "int8"))
    assert by["evsparse int8"]["bytes"] < by["evsparse float32"]["bytes"]  # 1 byte per value, not 4
    assert by["F.linear"]["bytes"] == 48 * 80 * 4
    assert "## Cold-cache products" in md
    block = report["block"]
    assert [r["method"] for r in block] == ["block-pruned, sparse", "unstructured, sparse", "block-pruned, dense layout",
                                            "F.linear", "x @ W^T"]
    assert all(r["warm_us"] > 0 and r["cold_us"] > 0 and r["theoretical"] == pytest.approx(8.0) for r in block)
    assert {r["method"]: r for r in block}["unstructured, sparse"]["warm_vs_unstructured"] == pytest.approx(1.0)
    assert "## Block-pruned weights (16x1 blocks)" in md
    for c in report["crossover"]:
        assert c["int8_sparse_over_dense"] == pytest.approx(c["int8_dense_gather_us"] / c["int8_sparse_gather_us"])
    assert report["targets"] and "| target | measured | met |" in md
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("arg", ["20", "0", "-0.1", "abc"])
def test_report_command_rejects_non_fractions(arg, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--activity", arg, "--quiet"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--activity" in err and ("fraction" in err or "not a number" in err)


def test_sweep_cases_share_their_weight_across_activities():
    """A sweep draws each (size, density) weight once (8192x24576 takes seconds): cases that differ
    only in activity get the same tensor; the inputs still follow the activity."""
    from evsparse.bench import Case

    a, b = Case(64, 96, 0.5, 0.25), Case(64, 96, 0.125, 0.25)
    assert a.w is b.w and a.w.shape == (96, 64) and 0.15 < float((a.w != 0).float().mean()) < 0.35
    assert all(int((x != 0).sum()) == 32 for x in a.xs) and all(int((x != 0).sum()) == 8 for x in b.xs)
    assert not torch.equal(Case(64, 96, 0.5, 1.0).w, a.w)
    assert torch.equal(Case(64, 96, 0.5, 0.25).w, a.w)  # same draw again after the cache moved on


def test_cpu_pytest_benchmarks_run(run_benchmarks_once):
    """benchmarks/test_bench_{linear,egru,linear_rnn,layout,stack_step,paced,int8,block}.py (pytest-benchmark)
    at their smallest size, each case once (--benchmark-disable): every method of every group runs."""
    files = [f"benchmarks/test_bench_{name}.py" for name in ("sparse_linear", "egru", "linear_rnn", "layout", "stack_step",
                                                          "paced", "int8", "block")]
    stdout = run_benchmarks_once(files, "-k", "256")
    passed = int(stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 177, stdout[-500:]  # (12 of them int8 vs float32/float16, warm and cold; 15 block-pruned)


def test_egru_threshold_calibration_sets_every_layer_to_the_target_activity():
    """Each layer's threshold is bisected on its own activity, bottom first (one shared threshold left
    the lower layers of a stack at 15-31% when the top was at 10%)."""
    from evsparse.bench.common import calibrate_egru_thresholds_
    from evsparse.nn import EGRU

    torch.manual_seed(0)
    egru = EGRU(32, 32, num_layers=3).eval()
    xs = torch.randn(64, 1, 32) * (torch.rand(64, 1, 32) < 0.1)
    with torch.no_grad():
        calibrate_egru_thresholds_(egru, xs, 0.1)
        egru(xs)
    assert egru.activity() == pytest.approx([0.1] * 3, abs=0.01)
    assert len({float(egru.get_parameter(f"thr_l{k}").detach()[0]) for k in range(3)}) == 3  # one per layer
