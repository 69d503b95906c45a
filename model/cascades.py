"""Attention algorithms as Einsum cascades (FuseMax, MICRO 2024; ../shared/notes/papers.md): 3-pass, 2-pass and
1-pass (online softmax), each producing the same final tensor AV[f, p] from the same inputs Q, K, V.

Ranks: P query rows, E (=F in these models' heads) the head dimension, M keys. The 1- and 2-pass cascades split the
keys M = M1·M0 (M0 a tile of keys, M1 the tiles) and read K and V as K[e, m1, m0], V[f, m1, m0]; the 3-pass one
reads them over M. `batch` ranks (e.g. B, H) prefix every tensor but the weights of a grouped-query head: with
`kv_groups`, the heads split into G groups of H/G query heads sharing one K and V (Llama-3's 8 KV heads).

Each Einsum counts its real operations: QK is P·M·E MACs, every element-wise step one operation per output point,
the division P·F. `exp` of a difference is one `exp` operation (its cost per element is the unit's exp cost).
The 1-pass cascade is the paper's Einsum for Einsum, plus one copy, RMO, holding the previous running max while RM
updates (PRM needs both RM before and after the step; the 1-D PE keeps it in a register).
"""
from __future__ import annotations

from .spec import Einsum, TensorRef


def _ref(t, ranks, running=None):
    return TensorRef(tensor=t, ranks=list(ranks), running=running)


def _e(name, out, inputs, op, recurrence=None):
    return Einsum(name=name, output=_ref(name, out), inputs=inputs, op=op, recurrence=recurrence)


def _heads(batch, kv_groups):
    """(ranks prefixing Q and the scores, ranks prefixing K and V)."""
    if kv_groups:
        return [*batch, "G", "R"], [*batch, "G"]
    return list(batch), list(batch)


def three_pass(batch=("H",), kv_groups=False, keys=("M",)) -> list[Einsum]:
    """The numerically stable softmax: max, then exponentials and their sum, then normalise and multiply by V.
    `keys`: the key ranks, ("M",), or ("M1", "M0") to read K and V as the other cascades do (the same mapspace
    of tile sizes: any divisor of M1·M0 is a product of divisors of each)."""
    q, kv = _heads(batch, kv_groups)
    s = [*q, *keys, "P"]
    row = [*q, "P"]
    return [
        _e("QK", s, [_ref("Q", [*q, "E", "P"]), _ref("K", [*kv, "E", *keys])], "mac"),
        _e("MX", row, [_ref("QK", s)], "max"),
        _e("SN", s, [_ref("QK", s), _ref("MX", row)], "exp"),
        _e("SD", row, [_ref("SN", s)], "add"),
        _e("A", s, [_ref("SN", s), _ref("SD", row)], "div"),
        _e("AV", [*q, "F", "P"], [_ref("A", s), _ref("V", [*kv, "F", *keys])], "mac"),
    ]


def two_pass(batch=("H",), kv_groups=False) -> list[Einsum]:
    """Pass 1: tile maxima LM, the global max GM, tile sums SLD rescaled to GM and summed into GD. Pass 2: the
    exponentials against GM, times V, divided by GD."""
    q, kv = _heads(batch, kv_groups)
    s = [*q, "M1", "M0", "P"]
    tile = [*q, "M1", "P"]
    row = [*q, "P"]
    return [
        _e("QK", s, [_ref("Q", [*q, "E", "P"]), _ref("K", [*kv, "E", "M1", "M0"])], "mac"),
        _e("LM", tile, [_ref("QK", s)], "max"),
        _e("GM", row, [_ref("LM", tile)], "max"),
        _e("SLN", s, [_ref("QK", s), _ref("LM", tile)], "exp"),
        _e("SLD", tile, [_ref("SLN", s)], "add"),
        _e("PRM", tile, [_ref("LM", tile), _ref("GM", row)], "exp"),
        _e("GD", row, [_ref("SLD", tile), _ref("PRM", tile)], "mac"),
        _e("SN", s, [_ref("QK", s), _ref("GM", row)], "exp"),
        _e("NV", [*q, "F", "P"], [_ref("SN", s), _ref("V", [*kv, "F", "M1", "M0"])], "mac"),
        _e("AV", [*q, "F", "P"], [_ref("NV", [*q, "F", "P"]), _ref("GD", row)], "div"),
    ]


def one_pass(batch=("H",), kv_groups=False) -> list[Einsum]:
    """Online softmax: running max RM, running denominator RD and running numerator RNV carried across the key
    tiles M1 and rescaled by PRM as they go; the division at the end."""
    q, kv = _heads(batch, kv_groups)
    s = [*q, "M1", "M0", "P"]
    tile = [*q, "M1", "P"]
    row = [*q, "P"]
    nv = [*q, "F", "M1", "P"]
    out = [*q, "F", "P"]
    return [
        _e("QK", s, [_ref("Q", [*q, "E", "P"]), _ref("K", [*kv, "E", "M1", "M0"])], "mac"),
        _e("LM", tile, [_ref("QK", s)], "max"),
        _e("RMO", tile, [_ref("RM", row, "previous")], "copy"),
        _e("RM", row, [_ref("LM", tile), _ref("RM", row, "previous")], "max", recurrence="M1"),
        _e("SLN", s, [_ref("QK", s), _ref("RM", row, "current")], "exp"),
        _e("PRM", tile, [_ref("RMO", tile), _ref("RM", row, "current")], "exp"),
        _e("SLD", tile, [_ref("SLN", s)], "add"),
        _e("SPD", tile, [_ref("PRM", tile), _ref("RD", row, "previous")], "mul"),
        _e("RD", row, [_ref("SPD", tile), _ref("SLD", tile)], "add", recurrence="M1"),
        _e("SLNV", nv, [_ref("SLN", s), _ref("V", [*kv, "F", "M1", "M0"])], "mac"),
        _e("SPNV", nv, [_ref("PRM", tile), _ref("RNV", out, "previous")], "mul"),
        _e("RNV", out, [_ref("SPNV", nv), _ref("SLNV", nv)], "add", recurrence="M1"),
        _e("AV", out, [_ref("RNV", out), _ref("RD", row)], "div"),
    ]


def cascade(name: str, batch=("H",), kv_groups=False) -> list[Einsum]:
    """The named cascade ("1pass", "2pass", "3pass"), keys split as M1·M0 in all three (the same inputs)."""
    if name == "3pass":
        return three_pass(batch, kv_groups, ("M1", "M0"))
    return {"1pass": one_pass, "2pass": two_pass}[name](batch, kv_groups)


CASCADES = ("1pass", "2pass", "3pass")
