"""PackedWeight: construction, properties, conversions, serialisation and validation."""

import io

import pytest
import torch

import evsparse
from evsparse import PackedWeight


def _sparse_parts():
    # W [out=4, in=3]: column 0 -> rows {1, 3}; column 1 empty; column 2 -> row 0
    col_ptr = torch.tensor([0, 2, 2, 3])
    row_idx = torch.tensor([1, 3, 0], dtype=torch.int16)
    values = torch.tensor([1.5, -2.0, 3.0])
    return col_ptr, row_idx, values


def test_sparse_layout_is_csc_of_the_weight():
    col_ptr, row_idx, values = _sparse_parts()
    pw = PackedWeight("sparse", (4, 3), values, col_ptr, row_idx)
    expected = torch.zeros(4, 3)
    expected[1, 0], expected[3, 0], expected[0, 2] = 1.5, -2.0, 3.0
    assert torch.equal(pw.to_dense(), expected)
    packed = evsparse.pack(expected, layout="sparse")
    assert torch.equal(packed.col_ptr, col_ptr) and torch.equal(packed.row_idx, row_idx)
    assert torch.equal(packed.values, values)


def test_properties_and_repr():
    w = torch.randn(50, 40)
    mask = torch.rand(50, 40) < 0.1
    pw = evsparse.pack(w, mask)
    assert pw.layout == "sparse" and pw.shape == torch.Size([50, 40])
    assert pw.nnz == int(mask.sum()) and pw.density == pytest.approx(int(mask.sum()) / 2000)
    assert pw.dtype == torch.float32 and pw.device == torch.device("cpu") and pw.index_dtype == torch.int16
    assert "layout='sparse'" in repr(pw) and "shape=(50, 40)" in repr(pw)
    dense = evsparse.pack(w)
    assert dense.layout == "dense" and dense.values.shape == (40, 50) and dense.nnz == 2000


def test_auto_layout_rule():
    w = torch.randn(100, 100)
    thr = evsparse.AUTO_SPARSE_MAX_DENSITY
    low = torch.rand(100, 100) < thr * 0.5
    high = torch.rand(100, 100) < min(1.0, thr * 2)
    assert evsparse.pack(w, low).layout == "sparse"
    assert evsparse.pack(w, high).layout == "dense"


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_to_dense_roundtrip_and_mask(layout):
    w = torch.randn(33, 17)
    mask = torch.rand(33, 17) < 0.5
    assert torch.equal(evsparse.pack(w, mask, layout).to_dense(), w * mask)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_save_load_roundtrip(layout, tmp_path):
    pw = evsparse.pack(torch.randn(20, 10), torch.rand(20, 10) < 0.3, layout)
    path = tmp_path / "pw.pt"
    torch.save({"w": pw}, path)
    loaded = torch.load(path)  # weights_only=True: PackedWeight is an allowlisted global
    assert isinstance(loaded["w"], PackedWeight)
    assert torch.equal(loaded["w"].to_dense(), pw.to_dense()) and loaded["w"].layout == layout


def test_load_revalidates_corrupted_state():
    pw = evsparse.pack(torch.randn(6, 4), layout="sparse")
    pw.row_idx[0] = 100  # corrupt after construction
    buf = io.BytesIO()
    torch.save(pw, buf)
    buf.seek(0)
    with pytest.raises(ValueError, match="row_idx out of range"):
        torch.load(buf)


def test_to_dtype_and_device():
    pw = evsparse.pack(torch.randn(8, 5), layout="sparse")
    half = pw.to(dtype=torch.float16)
    assert half.dtype == torch.float16 and half.row_idx.dtype == torch.int16
    assert torch.equal(half.to_dense(), pw.to_dense().half())
    assert pw.to("cpu").device == torch.device("cpu")
    with pytest.raises(ValueError, match="dtype"):
        pw.to(dtype=torch.int32)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c, r, v: (c, r, v[:-1]), "one entry per row index"),
        (lambda c, r, v: (c[:-1], r, v), "in_features \\+ 1"),
        (lambda c, r, v: (torch.tensor([0, 3, 2, 3]), r, v), "not monotone"),
        (lambda c, r, v: (torch.tensor([1, 2, 2, 3]), r, v), "start at 0"),
        (lambda c, r, v: (c, torch.tensor([1, 4, 0], dtype=torch.int16), v), "out of range"),
        (lambda c, r, v: (c, torch.tensor([1, -1, 0], dtype=torch.int16), v), "out of range"),
        (lambda c, r, v: (c, torch.tensor([3, 1, 0], dtype=torch.int16), v), "strictly increasing within column 0"),
        (lambda c, r, v: (c, torch.tensor([1, 1, 0], dtype=torch.int16), v), "strictly increasing"),
        (lambda c, r, v: (c, r.long(), v), "int16 or int32"),
        (lambda c, r, v: (c.int(), r, v), "col_ptr must be int64"),
        (lambda c, r, v: (c, r, v.int()), "values dtype"),
        (lambda c, r, v: (c, r[::2], v[::2]), "contiguous"),
    ],
)
def test_inconsistent_sparse_parts_are_rejected(mutate, message):
    col_ptr, row_idx, values = mutate(*_sparse_parts())
    with pytest.raises(ValueError, match=message):
        PackedWeight("sparse", (4, 3), values, col_ptr, row_idx)


def test_other_construction_errors():
    with pytest.raises(ValueError, match="layout"):
        PackedWeight("csr", (2, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="shape \\[in, out\\]"):
        PackedWeight("dense", (2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="cannot address"):
        PackedWeight("sparse", (40000, 1), torch.zeros(0), torch.tensor([0, 0]), torch.zeros(0, dtype=torch.int16))
    with pytest.raises(ValueError, match="layout must be one of"):
        evsparse.pack(torch.randn(3, 3), layout="csc")
    with pytest.raises(ValueError, match="2-D"):
        evsparse.pack(torch.randn(3))
    with pytest.raises(ValueError, match="mask must be a tensor of shape"):
        evsparse.pack(torch.randn(3, 3), mask=torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN or Inf"):
        evsparse.pack(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="dtype"):
        evsparse.pack(torch.ones(2, 2, dtype=torch.int32))
