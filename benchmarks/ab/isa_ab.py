"""AVX-512 against AVX2 kernels, interleaved in one process (issue #25: "AVX-512 >= 1.3x over AVX2").

Every point packs the weight once (layout ``auto`` for its dtype, as ``pack`` chooses) and times
``sparse_linear`` at batch 1 with ``evsparse.set_isa`` switched between blocks of ~2 ms, so both ISAs
see the same weights, inputs and machine minute. Prints one line per point: the medians and their
ratio. ``--block 16`` draws the mask in 16x1 blocks (what ``evsparse.prune``'s ``block=16`` leaves, so
the sparse layout's block path runs) instead of element by element.
Run on an AVX-512 machine:  python benchmarks/ab/isa_ab.py [--rounds N] [--block 16]
"""
import argparse

import torch

import evsparse
from evsparse.bench.common import KnobSwitch, cpu_name, random_block_mask
from evsparse.timing import time_interleaved

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=15)
ap.add_argument("--block", type=int, default=1, choices=(1, 16), help="mask granularity in output rows")
args = ap.parse_args()
torch.manual_seed(0)
print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; medians over {args.rounds} rounds; "
      f"mask in {args.block}x1 blocks")
isa_switch = KnobSwitch(evsparse.set_isa)
with torch.inference_mode():
    for inp, out in [(1024, 3072), (2048, 6144)]:
        for dens in (0.1, 0.15, 0.2, 1.0):
            for act in (0.1, 1.0):
                for wd in (None, torch.int8):
                    w = torch.randn(out, inp)
                    mask = random_block_mask(out, inp, dens, block=args.block)
                    pw = evsparse.pack(w, mask, weight_dtype=wd)
                    xs = [torch.randn(1, inp) * (torch.rand(1, inp) < act) for _ in range(16)]

                    product = lambda x, pw=pw: evsparse.sparse_linear(x, pw)  # noqa: E731
                    med = time_interleaved({isa: (isa_switch.wrap(isa, product), xs) for isa in ("avx2", "avx512")},
                                           args.rounds)
                    a2, a5 = med["avx2"] * 1e6, med["avx512"] * 1e6
                    print(f"{inp}x{out} dens {dens:.2f} act {act:.1f} {'int8' if wd else 'fp32'} {pw.layout:6s}: "
                          f"avx2 {a2:7.1f} us  avx512 {a5:7.1f} us  avx512 faster by {a2 / a5:.2f}x")
evsparse.set_isa("avx512")
