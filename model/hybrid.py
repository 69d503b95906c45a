"""Hybrid butterfly/attention stacks (the butterfly paper's hybrid network, arXiv 2411.00734; docs/butterfly.md) as
one Einsum cascade: most blocks mix tokens with a butterfly layer, a few keep softmax attention, every block has a
residual add, an FFN (dense, or butterfly-factorised) and a second residual add.

The sequence index is written as digits everywhere (N0, N1, … least significant first), so a butterfly block's
output is the next block's input without a reshape; attention names the key digits KN0, KN1, … (a view of the
block input). Attention is the 3-pass cascade (model/cascades.py) over H heads of D/H channels. The FFN's
activation is a ReLU, counted as one `max` per element (GELU is not an operation the model knows). Layer norms,
biases, masking and positional encodings are not modelled.

A butterfly-factorised FFN (after FABNet's butterfly linear layers) writes the hidden dimension D as digits D0, D1,
… in every block (so the blocks still chain without reshapes) and replaces each D×G weight matrix, G = r·D, by r
learned butterflies stacked along an expansion rank FX of bound r: the up projection's first stage broadcasts X to
the r copies, every stage mixes one hidden digit of every copy, and the down projection's last stage also sums the
r copies. That is N·D·r·Σ R_l MACs per projection instead of the dense N·D·G (docs/butterfly.md).
"""
from __future__ import annotations

from .butterfly import Digits, butterfly_stages, stage_ranks
from .spec import Einsum, TensorRef


def _ref(t, ranks):
    return TensorRef(tensor=t, ranks=list(ranks))


def _e(name, out, inputs, op):
    return Einsum(name=name, output=_ref(name, out), inputs=inputs, op=op)


def attention_block(p: str, x: str, seq: Digits, hid=("D",)) -> list[Einsum]:
    """Projections, 3-pass softmax attention and the output projection of block `p` reading X = `x`[B, N…, D…]
    (`hid`: the hidden ranks, D or its digits)."""
    n, k, h = list(seq.names), [f"K{d}" for d in seq.names], list(hid)
    s = ["B", "H", *k, *n]
    row = ["B", "H", *n]
    return [
        _e(f"{p}Q", ["B", "H", "E", *n], [_ref(x, ["B", *n, *h]), _ref(f"{p}WQ", [*h, "H", "E"])], "mac"),
        _e(f"{p}K", ["B", "H", "E", *k], [_ref(x, ["B", *k, *h]), _ref(f"{p}WK", [*h, "H", "E"])], "mac"),
        _e(f"{p}V", ["B", "H", "F", *k], [_ref(x, ["B", *k, *h]), _ref(f"{p}WV", [*h, "H", "F"])], "mac"),
        _e(f"{p}QK", s, [_ref(f"{p}Q", ["B", "H", "E", *n]), _ref(f"{p}K", ["B", "H", "E", *k])], "mac"),
        _e(f"{p}MX", row, [_ref(f"{p}QK", s)], "max"),
        _e(f"{p}SN", s, [_ref(f"{p}QK", s), _ref(f"{p}MX", row)], "exp"),
        _e(f"{p}SD", row, [_ref(f"{p}SN", s)], "add"),
        _e(f"{p}A", s, [_ref(f"{p}SN", s), _ref(f"{p}SD", row)], "div"),
        _e(f"{p}AV", ["B", "H", "F", *n], [_ref(f"{p}A", s), _ref(f"{p}V", ["B", "H", "F", *k])], "mac"),
        _e(f"{p}O", ["B", *n, *h], [_ref(f"{p}AV", ["B", "H", "F", *n]), _ref(f"{p}WO", ["H", "F", *h])], "mac"),
    ]


def ffn(p: str, x: str, seq: Digits) -> list[Einsum]:
    """U = X·W1 over D → G, ReLU (one max per element), Y = act·W2 over G → D."""
    n = list(seq.names)
    return [_e(f"{p}U", ["B", *n, "G"], [_ref(x, ["B", *n, "D"]), _ref(f"{p}W1", ["D", "G"])], "mac"),
            _e(f"{p}ACT", ["B", *n, "G"], [_ref(f"{p}U", ["B", *n, "G"])], "max"),
            _e(f"{p}Y", ["B", *n, "D"], [_ref(f"{p}ACT", ["B", *n, "G"]), _ref(f"{p}W2", ["G", "D"])], "mac")]


def butterfly_ffn(p: str, x: str, seq: Digits, hid: Digits, expand: int) -> list[Einsum]:
    """U = r stacked butterflies of X over the hidden digits (rank FX of bound r = `expand`), ReLU, then
    Y = the sum over FX of r butterflies of the activations: the two D×G matrices of a dense FFN, factorised."""
    lead, fx, h = ["B", *seq.names], ["FX"] if expand > 1 else [], list(hid.names)
    return [*butterfly_stages(x, f"{p}U", f"{p}U", lead, hid, [], copies=fx, broadcast_first=True),
            _e(f"{p}ACT", [*lead, *fx, *h], [_ref(f"{p}U", [*lead, *fx, *h])], "max"),
            *butterfly_stages(f"{p}ACT", f"{p}Y", f"{p}V", lead, hid, [], copies=fx, reduce_last=True)]


def hybrid_einsums(blocks: list[str], seq: Digits, hid: Digits | None = None, expand: int = 1) -> list[Einsum]:
    """The stack: `blocks` lists "attention" or "butterfly" per block, bottom first. Block i reads X{i} (X0 the
    input) and writes X{i+1}. With `hid` (the hidden dimension's digits) the FFNs are butterfly-factorised with
    `expand` = G/D copies; without, dense over D."""
    out: list[Einsum] = []
    hidden = list(hid.names) if hid else ["D"]
    for i, kind in enumerate(blocks):
        p, x = f"L{i}", f"X{i}"
        n = list(seq.names)
        mix = attention_block(p, x, seq, hidden) if kind == "attention" else \
            butterfly_stages(x, f"{p}O", f"{p}M", ["B"], seq, hidden)
        out += mix
        out.append(Einsum(name=f"{p}R1", output=_ref(f"{p}R1", ["B", *n, *hidden]),
                          inputs=[_ref(x, ["B", *n, *hidden]), _ref(f"{p}O", ["B", *n, *hidden])], op="add"))
        out += butterfly_ffn(p, f"{p}R1", seq, hid, expand) if hid else ffn(p, f"{p}R1", seq)
        out.append(Einsum(name=f"{p}R2", output=_ref(f"X{i + 1}", ["B", *n, *hidden]),
                          inputs=[_ref(f"{p}R1", ["B", *n, *hidden]), _ref(f"{p}Y", ["B", *n, *hidden])], op="add"))
    return out


def hybrid_ranks(seq: Digits, batch: int, hidden: int, heads: int, ffn_dim: int, attention: bool,
                 hid: Digits | None = None) -> dict[str, int]:
    ranks = {"B": batch, **stage_ranks(seq, "learned")}
    if hid:
        ranks.update(stage_ranks(hid, "learned"))
        if ffn_dim // hidden > 1:
            ranks["FX"] = ffn_dim // hidden
    else:
        ranks.update({"D": hidden, "G": ffn_dim})
    if attention:
        ranks.update({"H": heads, "E": hidden // heads, "F": hidden // heads})
        ranks.update({f"K{d}": b for d, b in zip(seq.names, seq.bounds)})
    return ranks
