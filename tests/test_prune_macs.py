"""evsparse.prune and evsparse.macs."""

import pytest
import torch
from torch import nn

from evsparse import macs, prune
from evsparse.nn import EGRU


class TinyLM(nn.Module):
    """embedding -> EGRU stack -> tied decoder, as in the PTB pipeline."""

    def __init__(self, vocab=50, emb=16, hidden=24, layers=2):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.egru = EGRU(emb, hidden, num_layers=layers, thr_mean=0.1)
        self.proj = nn.Linear(hidden, emb)
        self.decoder = nn.Linear(emb, vocab)
        self.decoder.weight = self.embedding.weight

    def forward(self, tokens):
        y, _ = self.egru(self.embedding(tokens))
        return self.decoder(self.proj(y))


def test_global_magnitude_prunes_the_smallest_across_tensors():
    torch.manual_seed(0)
    model = TinyLM()
    with torch.no_grad():
        w = model.egru.weight_hh_l1  # every entry above all others' (|w| <= 1/sqrt(24)): a global threshold spares it
        w.copy_(torch.where(w >= 0, 1.0 + w, -1.0 + w))
    masks = prune.global_magnitude(model, 0.5)
    assert set(masks) == {f"egru.weight_{k}_l{i}" for k in ("ih", "hh") for i in (0, 1)}  # no emb/decoder/bias/thr
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == total - round(0.5 * total)
    assert bool(masks["egru.weight_hh_l1"].all())
    params = prune.prunable_parameters(model)
    largest_pruned = max(float(params[n].detach().abs()[~m].max()) for n, m in masks.items() if (~m).any())
    smallest_kept = min(float(params[n].detach().abs()[m].min()) for n, m in masks.items() if m.any())
    assert largest_pruned <= smallest_kept


def test_include_is_configurable():
    model = TinyLM()
    masks = prune.global_magnitude(model, 0.3, include=lambda mn, m, pn, p: isinstance(m, nn.Linear) and pn == "weight")
    assert set(masks) == {"proj.weight", "decoder.weight"}


def test_masks_stay_applied_through_adamw():
    torch.manual_seed(1)
    model = TinyLM()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    tokens = torch.randint(0, 50, (12, 3))
    for _ in range(3):  # give Adam moments for every weight first
        opt.zero_grad()
        model(tokens).logsumexp(-1).mean().backward()
        opt.step()
    masks = prune.global_magnitude(model, 0.8)
    handle = prune.keep_applied(opt, model, masks)
    for _ in range(5):
        opt.zero_grad()
        model(tokens).logsumexp(-1).mean().backward()
        opt.step()
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert bool((params[name][~mask] == 0).all()), name
    assert prune.sparsity_of(model) == pytest.approx(0.8, abs=1e-3)
    handle.remove()


def test_cubic_schedule_and_iterative_pruner():
    assert prune.cubic_sparsity(0, 0.9, 10, 110) == 0.0
    assert prune.cubic_sparsity(10, 0.9, 10, 110) == 0.0
    assert prune.cubic_sparsity(60, 0.9, 10, 110) == pytest.approx(0.9 - 0.9 * 0.5 ** 3)
    assert prune.cubic_sparsity(500, 0.9, 10, 110) == pytest.approx(0.9)
    torch.manual_seed(2)
    model = TinyLM()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = prune.IterativePruner(model, opt, final_sparsity=0.75, start_step=2, end_step=10, every=2)
    tokens = torch.randint(0, 50, (8, 2))
    seen = []
    for step in range(14):
        opt.zero_grad()
        model(tokens).logsumexp(-1).mean().backward()
        opt.step()
        seen.append(pruner.step(step))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(0.75)
    assert prune.sparsity_of(model) == pytest.approx(0.75, abs=1e-3)
    # The masks export to the sparse inference module, which then equals the pruned training module.
    model.eval()
    sparse = model.egru.sparsify(prune.masks_for(model.egru, pruner.masks, "egru."))
    x = model.embedding(tokens).detach()
    torch.testing.assert_close(sparse(x)[0], model.egru(x)[0].detach(), rtol=1e-5, atol=1e-5)


def test_macs_reference_totals():
    awd = nn.Sequential(nn.LSTM(400, 1150), nn.LSTM(1150, 1150), nn.LSTM(1150, 400))
    assert macs.count(awd).totals["dense"] == 20_190_000  # AWD-LSTM: 20.19M per token
    egru = EGRU(750, 1350, num_layers=1)
    stack = nn.ModuleList([EGRU(750, 1350), EGRU(1350, 1350), EGRU(1350, 750)])
    assert macs.count(stack).totals["dense"] == 24_165_000  # EGRU 750 -> 1350 -> 1350 -> 750
    assert macs.count(egru).totals["dense"] == 3 * 1350 * (750 + 1350)
    assert macs.count(nn.GRU(10, 20, num_layers=2)).totals["dense"] == 3 * 20 * 30 + 3 * 20 * 40


def test_macs_with_masks_and_measured_activity():
    torch.manual_seed(3)
    model = TinyLM().eval()
    masks = prune.global_magnitude(model, 0.6)
    prune.apply_masks(model, masks)
    tokens = torch.randint(0, 50, (20, 2))
    report = macs.count(model, tokens, weight_masks=masks)
    act = model.egru.activity()
    l0, l1 = report.layers
    assert l0.input_activity == pytest.approx(1.0)  # embedding: dense
    assert (l0.activity, l1.activity) == pytest.approx(act) and l1.input_activity == pytest.approx(act[0])
    d = {n: float(m.float().mean()) for n, m in masks.items()}
    H, E = 24, 16
    expected = 3 * H * (d["egru.weight_ih_l0"] * E + d["egru.weight_hh_l0"] * act[0] * H) + \
        3 * H * (d["egru.weight_ih_l1"] * act[0] * H + d["egru.weight_hh_l1"] * act[1] * H)
    assert report.totals["combined"] == pytest.approx(expected)
    assert report.totals["weight_sparse"] < report.totals["dense"]
    assert report.other["other nn.Linear (e.g. decoder)"] == 24 * 16 + 16 * 50
    with torch.no_grad():  # the linears' own inputs: proj takes the EGRU's events, the decoder proj's output
        y = model.egru(model.embedding(tokens))[0]
        a_proj, a_dec = float((y != 0).float().mean()), float((model.proj(y) != 0).float().mean())
    d_proj = float((model.proj.weight != 0).float().mean())
    assert a_proj == pytest.approx(act[1]) and a_proj < 0.9
    assert report.other["other nn.Linear, zero inputs skipped"] == pytest.approx(
        a_proj * d_proj * 24 * 16 + a_dec * 16 * 50)
    assert "total (per token)" in str(report) and report.to_dict()["totals"] == report.totals
    # without masks, densities come from the (pruned) weights themselves
    assert macs.count(model, tokens).totals["combined"] == pytest.approx(expected, rel=1e-3)


def test_errors():
    with pytest.raises(ValueError, match="no EGRU/.*LSTM/GRU/RNN"):
        macs.count(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="sparsity must be in"):
        prune.global_magnitude(TinyLM(), 1.5)
    with pytest.raises(ValueError, match="does not have"):
        prune.apply_masks(TinyLM(), {"nope.weight": torch.ones(2)})
    with pytest.raises(ValueError, match="no prunable parameters"):
        prune.global_magnitude(nn.Linear(3, 3), 0.5)


def test_macs_empty_sequence_is_not_nan():
    import math

    report = macs.count(EGRU(4, 6, 2), torch.zeros(0, 1, 4))
    assert all(not math.isnan(v) for v in report.totals.values())


def test_macs_refuses_bad_masks():
    model = EGRU(4, 6, 1)
    with pytest.raises(ValueError, match="must be a tensor of shape \\[18, 6\\]"):
        macs.count(model, weight_masks={"weight_hh_l0": torch.ones(6, 18, dtype=torch.bool)})
    with pytest.raises(ValueError, match="boolean or hold only 0 and 1"):
        macs.count(model, weight_masks={"weight_hh_l0": torch.full((18, 6), 3.0)})
    ok = macs.count(model, weight_masks={"weight_hh_l0": torch.ones(18, 6)})  # 0/1 floats are fine
    assert ok.totals["dense"] > 0
