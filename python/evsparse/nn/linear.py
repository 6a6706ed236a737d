"""``SparseLinear``: an ``nn.Linear`` whose product runs on the gather kernels."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..functional import sparse_linear
from ..layout import pack
from ..packed import PackedWeight
from .._deprecation import alias_classmethod
from ._buffers import PackedModule, register_optional_buffer
from ._recurrent import fast_op

__all__ = ["SparseLinear"]


class SparseLinear(PackedModule):
    """Holds a :class:`~evsparse.PackedWeight` (its values as the parameter ``weight_values``, its
    index arrays as buffers) and an optional bias; ``forward(x) == F.linear(x, W * mask, bias)``.

    Build it from a trained layer with :meth:`from_module`. Its packed data is validated when loaded
    and whenever a buffer is replaced or edited in place (see :class:`~evsparse.PackedWeight`).
    """

    def __init__(self, weight: PackedWeight, bias: Optional[torch.Tensor] = None):
        super().__init__()
        if not isinstance(weight, PackedWeight):
            raise ValueError(f"SparseLinear: weight must be a PackedWeight, got {type(weight).__name__}")
        if bias is not None and tuple(bias.shape) != (weight.out_features,):
            raise ValueError(f"SparseLinear: bias must have shape [{weight.out_features}], got {list(bias.shape)}")
        self.in_features = weight.in_features
        self.out_features = weight.out_features
        self.layout = weight.layout
        # int8 values are integers (a frozen parameter: no gradient); their scale, a buffer, is float32.
        self.weight_values = nn.Parameter(weight.values.detach(), requires_grad=weight.dtype != torch.int8)
        register_optional_buffer(self, "col_ptr", weight.col_ptr)
        register_optional_buffer(self, "row_idx", weight.row_idx)
        register_optional_buffer(self, "weight_scale", None if weight.scale is None else weight.scale.detach())
        self.bias = None if bias is None else nn.Parameter(bias.detach())

    @classmethod
    def from_module(cls, linear: nn.Linear, mask: Optional[torch.Tensor] = None, layout: str = "auto",
                    example_input: Optional[torch.Tensor] = None,
                    weight_dtype: Optional[torch.dtype] = None,
                    pace_ms: Optional[float] = None) -> "SparseLinear":
        """Packs ``linear.weight * mask`` (see :func:`evsparse.pack`, also for ``layout="timed"``,
        ``example_input``, ``pace_ms`` and ``weight_dtype``, e.g. ``torch.int8``) and copies the bias."""
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"SparseLinear.from_module: expected nn.Linear, got {type(linear).__name__}")
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(pack(linear.weight, mask=mask, layout=layout, example_input=example_input,
                        weight_dtype=weight_dtype, pace_ms=pace_ms), bias)

    from_linear = alias_classmethod("from_module", "SparseLinear.from_linear", "SparseLinear.from_module")

    @property
    def packed(self) -> PackedWeight:
        """The packed weight, sharing this module's parameter and buffers."""
        return PackedWeight._trusted(
            self.layout, (self.out_features, self.in_features), self.weight_values, self.col_ptr, self.row_idx,
            self.weight_scale
        )

    def _packed_weights(self) -> list:
        return [("weight", self.layout, (self.out_features, self.in_features), self.weight_values, self.col_ptr,
                 self.row_idx, self.weight_scale)]

    _fast: Optional[tuple] = None  # (op, args after x) for the CPU fast path, set at validation

    def _packed_changed(self) -> None:
        # The op and its arguments, gathered once: nn.Module attribute lookups and building the
        # PackedWeight cost more than a small product (the op checks every call's input itself).
        self._fast = None
        if self.weight_values.device.type == "cpu":
            if self.layout == "dense":
                self._fast = (fast_op(torch.ops.evsparse.gather_linear.default),
                              (self.weight_values, self.bias, self.weight_scale))
            else:
                self._fast = (fast_op(torch.ops.evsparse.sparse_gather_linear.default),
                              (self.col_ptr, self.row_idx, self.weight_values, self.out_features, self.bias,
                               self.weight_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = self._fast
        if (fast is not None and type(x) is torch.Tensor and x.dim() <= 2
                and self._packed_generation == self._buffers.generation
                and not torch.compiler.is_compiling()):
            return fast[0](x, *fast[1])
        if not torch.compiler.is_compiling():
            self._ensure_packed_valid()
        return sparse_linear(x, self.packed, self.bias)

    def extra_repr(self) -> str:
        pw = self.packed
        dtype = "" if pw.dtype == torch.float32 else f", weight_dtype={pw.dtype}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, layout={self.layout!r}, "
                f"density={pw.density:.4f}{dtype}, bias={self.bias is not None}")
