"""Butterfly mixing layers as Einsum cascades (../shared/notes/papers.md, "Butterfly sparsity on a reconfigurable
dataflow array"; docs/butterfly.md).

A mixed dimension of size N = 2^n is written as digits: with radix R = 2^k, s = ⌈n/k⌉ digit ranks (the last one
smaller when k does not divide n), digit p of bound R_p. Stage l transforms digit l and leaves the others alone:

    X_{l+1}[b, …, d_l, …, h] = Σ_{j_l} W_l[<other digits>, d_l, j_l] · X_l[b, …, j_l, …, h]

N/R_l independent R_l×R_l blocks, N·R_l MACs per vector (2N for radix 2). Stage l names position l of its input
`J<l>` and of its output the digit's own name, so the next stage reads X_{l+1} with that digit as a free rank: a
view (docs/model.md §1). Fusing stages l … l+k−1 over the digits none of them transforms keeps a tile of the
R_l·…·R_{l+k−1} elements those stages mix on chip: the multilayer dataflow, which the mapper may or may not pick.

Weights: "learned" (a learned butterfly: every block its own R×R weights, N·R_l per stage, shared over the batch
and the hidden channels) or "fft" (fixed twiddles of a radix-R decimation-in-time FFT: they depend on the digits
below l and on (d_l, j_l) only). FFT data are complex: a rank C (bound 2, real and imaginary part) on every data
tensor and CI on the input, so one complex MAC is counted as the 4 real MACs of a 2×2 real block (no 3-multiply
trick), and a complex word as 2 real words.
"""
from __future__ import annotations

from dataclasses import dataclass

from .spec import Einsum, TensorRef


@dataclass(frozen=True)
class Digits:
    """The digit ranks of one mixed dimension: names (least significant first) and bounds."""

    names: tuple[str, ...]
    bounds: tuple[int, ...]

    @property
    def size(self) -> int:
        out = 1
        for b in self.bounds:
            out *= b
        return out


def digits(prefix: str, n: int, radix: int) -> Digits:
    """Split n = 2^bits into digits of `radix` (a power of two ≥ 2), the most significant one smaller if need be."""
    if n < 2 or n & (n - 1):
        raise ValueError(f"the mixed size {n} is not a power of two ≥ 2")
    if radix < 2 or radix & (radix - 1):
        raise ValueError(f"the radix {radix} is not a power of two ≥ 2")
    bits, k = n.bit_length() - 1, radix.bit_length() - 1
    bounds = [radix] * (bits // k) + ([2 ** (bits % k)] if bits % k else [])
    return Digits(tuple(f"{prefix}{p}" for p in range(len(bounds))), tuple(bounds))


def reduced_name(digit: str) -> str:
    """The name stage l gives the digit it sums over (its input's position l)."""
    return f"J{digit}"


def _ref(t, ranks):
    return TensorRef(tensor=t, ranks=list(ranks))


def butterfly_stages(x_in: str, x_out: str, name: str, lead: list[str], dig: Digits, tail: list[str],
                     weights: str = "learned", copies=(), broadcast_first: bool = False,
                     reduce_last: bool = False) -> list[Einsum]:
    """The stages mixing `dig` of X[lead, copies, digits (least significant first), tail]: stage l reads the previous
    stage's output (the first reads `x_in`), the last writes `x_out`. Stage names are `name` + digit name.

    `copies` (ranks such as a butterfly FFN's FX, model/hybrid.py) stack independent butterflies: every weight has
    its own copy. `broadcast_first`: the first stage reads X without the copies (one input feeds them all);
    `reduce_last`: the last stage also sums over them (its output has none)."""
    if weights not in ("learned", "fft"):
        raise ValueError(f"weights must be learned or fft, not {weights!r}")
    cplx = weights == "fft"
    copies = list(copies)
    last = len(dig.names) - 1
    out: list[Einsum] = []
    prev = x_in
    for l, d in enumerate(dig.names):
        j = reduced_name(d)
        inp = [*lead, *([] if broadcast_first and l == 0 else copies),
               *[j if q == l else dq for q, dq in enumerate(dig.names)], *tail]
        res = [*lead, *([] if reduce_last and l == last else copies), *dig.names, *tail]
        if cplx:
            w = [*copies, *dig.names[:l], d, j, "C", "CI"]
            inp, res = [*inp, "CI"], [*res, "C"]
        else:
            w = [*copies, *[dq for q, dq in enumerate(dig.names) if q != l], d, j]
        target = x_out if l == last else f"{name}{d}"
        out.append(Einsum(name=f"{name}{d}", output=_ref(target, res),
                          inputs=[_ref(f"W{name}{d}", w), _ref(prev, inp)], op="mac"))
        prev = target
    return out


def stage_ranks(dig: Digits, weights: str) -> dict[str, int]:
    """The ranks the stages of `dig` add to a workload."""
    ranks = {d: b for d, b in zip(dig.names, dig.bounds)}
    ranks.update({reduced_name(d): b for d, b in zip(dig.names, dig.bounds)})
    if weights == "fft":
        ranks.update({"C": 2, "CI": 2})
    return ranks
