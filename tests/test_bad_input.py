"""Bad arguments to the ops get a clear ValueError naming the argument, never a crash."""

import pytest
import torch

import evsparse

ops = torch.ops.evsparse


@pytest.fixture(params=["dense", "sparse"])
def pw(request):
    return evsparse.pack(torch.randn(6, 5), torch.rand(6, 5) < 0.6, request.param)


def test_wrong_rank(pw):
    x3 = torch.randn(2, 3, 5)  # sparse_linear flattens [*, in]; the ops themselves take [in] or [B, in]
    with pytest.raises(ValueError, match="x must be 1-D"):
        if pw.layout == "dense":
            ops.gather_linear(x3, pw.values, None)
        else:
            ops.sparse_gather_linear(x3, pw.col_ptr, pw.row_idx, pw.values, 6, None)
    with pytest.raises(ValueError, match="x must be 1-D"):
        evsparse.sparse_linear(torch.tensor(1.0), pw)


def test_wrong_feature_size(pw):
    with pytest.raises(ValueError, match="in_features=5"):
        evsparse.sparse_linear(torch.randn(4), pw)


def test_wrong_dtypes(pw):
    with pytest.raises(ValueError, match="unsupported dtypes"):
        evsparse.sparse_linear(torch.randn(5, dtype=torch.float64), pw)
    with pytest.raises(ValueError, match="unsupported dtypes"):
        evsparse.sparse_linear(torch.ones(5, dtype=torch.int64), pw)
    with pytest.raises(ValueError, match="bias dtype"):
        evsparse.sparse_linear(torch.randn(5), pw, torch.randn(6, dtype=torch.float64))


def test_non_contiguous(pw):
    x = torch.randn(5, 3).t()  # [3, 5], non-contiguous
    with pytest.raises(ValueError, match="'x' must be contiguous"):
        evsparse.sparse_linear(x, pw)
    with pytest.raises(ValueError, match="'bias' must be contiguous"):
        evsparse.sparse_linear(torch.randn(5), pw, torch.randn(12)[::2])


def test_bad_bias_shape(pw):
    with pytest.raises(ValueError, match="bias must have shape \\[6\\]"):
        evsparse.sparse_linear(torch.randn(5), pw, torch.randn(7))


def test_not_a_packed_weight():
    with pytest.raises(ValueError, match="PackedWeight"):
        evsparse.sparse_linear(torch.randn(5), torch.randn(6, 5))


def test_wrong_device(pw):
    with pytest.raises(ValueError, match="x is on meta but the weight is on cpu"):
        evsparse.sparse_linear(torch.randn(5, device="meta"), pw)
    with pytest.raises(ValueError, match="all tensors must be on x's device"):
        torch.ops.evsparse.gather_linear(torch.randn(5, device="meta"), torch.randn(5, 6), None)


def test_raw_op_rejects_corrupt_pointers():
    """The raw op re-checks the pointer ranges of the columns it reads (O(active)), so a corrupted
    col_ptr is an error, not an out-of-bounds read."""
    col_ptr = torch.tensor([0, 2, 1000, 3])
    row_idx = torch.tensor([1, 3, 0], dtype=torch.int16)
    values = torch.randn(3)
    with pytest.raises(ValueError, match="col_ptr is inconsistent at column 1"):
        ops.sparse_gather_linear(torch.ones(3), col_ptr, row_idx, values, 4)
    with pytest.raises(ValueError, match="row_idx must be a 1-D int16 or int32"):
        ops.sparse_gather_linear(torch.ones(3), torch.tensor([0, 1, 2, 3]), row_idx.float(), values, 4)
    with pytest.raises(ValueError, match="int16 row indices cannot address"):
        ops.sparse_gather_linear(torch.ones(3), torch.tensor([0, 1, 2, 3]), row_idx, values, 40000)


def test_raw_dense_op_rejects_bad_weight():
    with pytest.raises(ValueError, match="weight_t must be 2-D"):
        ops.gather_linear(torch.ones(3), torch.ones(3), None)
    with pytest.raises(ValueError, match="'weight_t' must be contiguous"):
        ops.gather_linear(torch.ones(3), torch.ones(4, 3).t(), None)


def test_gradient_ops_check_the_whole_structure():
    g = torch.ones(2, 4)
    good_ptr = torch.tensor([0, 2, 2, 3])
    rows = torch.tensor([1, 3, 0], dtype=torch.int16)
    with pytest.raises(ValueError, match="row_idx\\[1\\] = 9 is out of range"):
        ops.sparse_gather_linear_grad_input(g, good_ptr, torch.tensor([1, 9, 0], dtype=torch.int16), torch.ones(3))
    with pytest.raises(ValueError, match="not monotone at column 1"):
        ops.sparse_gather_linear_grad_values(g, torch.ones(2, 3), torch.tensor([0, 3, 2, 3]), rows)
    with pytest.raises(ValueError, match="end at nnz=3"):
        ops.sparse_gather_linear_grad_values(g, torch.ones(2, 3), torch.tensor([0, 2, 2, 7]), rows)
