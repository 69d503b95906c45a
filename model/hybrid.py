"""Hybrid butterfly/attention stacks (the butterfly paper's hybrid network, arXiv 2411.00734; docs/butterfly.md) as
one Einsum cascade: most blocks mix tokens with a butterfly layer, a few keep softmax attention, every block has a
residual add, a dense FFN and a second residual add. (A butterfly-factorised FFN is not written yet.)

The sequence index is written as digits everywhere (N0, N1, … least significant first), so a butterfly block's
output is the next block's input without a reshape; attention names the key digits KN0, KN1, … (a view of the
block input). Attention is the 3-pass cascade (model/cascades.py) over H heads of D/H channels. The FFN's
activation is a ReLU, counted as one `max` per element (GELU is not an operation the model knows). Layer norms,
biases, masking and positional encodings are not modelled.
"""
from __future__ import annotations

from .butterfly import Digits, butterfly_stages, stage_ranks
from .spec import Einsum, TensorRef


def _ref(t, ranks):
    return TensorRef(tensor=t, ranks=list(ranks))


def _e(name, out, inputs, op):
    return Einsum(name=name, output=_ref(name, out), inputs=inputs, op=op)


def attention_block(p: str, x: str, seq: Digits) -> list[Einsum]:
    """Projections, 3-pass softmax attention and the output projection of block `p` reading X = `x`[B, N…, D]."""
    n, k = list(seq.names), [f"K{d}" for d in seq.names]
    s = ["B", "H", *k, *n]
    row = ["B", "H", *n]
    return [
        _e(f"{p}Q", ["B", "H", "E", *n], [_ref(x, ["B", *n, "D"]), _ref(f"{p}WQ", ["D", "H", "E"])], "mac"),
        _e(f"{p}K", ["B", "H", "E", *k], [_ref(x, ["B", *k, "D"]), _ref(f"{p}WK", ["D", "H", "E"])], "mac"),
        _e(f"{p}V", ["B", "H", "F", *k], [_ref(x, ["B", *k, "D"]), _ref(f"{p}WV", ["D", "H", "F"])], "mac"),
        _e(f"{p}QK", s, [_ref(f"{p}Q", ["B", "H", "E", *n]), _ref(f"{p}K", ["B", "H", "E", *k])], "mac"),
        _e(f"{p}MX", row, [_ref(f"{p}QK", s)], "max"),
        _e(f"{p}SN", s, [_ref(f"{p}QK", s), _ref(f"{p}MX", row)], "exp"),
        _e(f"{p}SD", row, [_ref(f"{p}SN", s)], "add"),
        _e(f"{p}A", s, [_ref(f"{p}SN", s), _ref(f"{p}SD", row)], "div"),
        _e(f"{p}AV", ["B", "H", "F", *n], [_ref(f"{p}A", s), _ref(f"{p}V", ["B", "H", "F", *k])], "mac"),
        _e(f"{p}O", ["B", *n, "D"], [_ref(f"{p}AV", ["B", "H", "F", *n]), _ref(f"{p}WO", ["H", "F", "D"])], "mac"),
    ]


def ffn(p: str, x: str, seq: Digits) -> list[Einsum]:
    """U = X·W1 over D → G, ReLU (one max per element), Y = act·W2 over G → D."""
    n = list(seq.names)
    return [_e(f"{p}U", ["B", *n, "G"], [_ref(x, ["B", *n, "D"]), _ref(f"{p}W1", ["D", "G"])], "mac"),
            _e(f"{p}ACT", ["B", *n, "G"], [_ref(f"{p}U", ["B", *n, "G"])], "max"),
            _e(f"{p}Y", ["B", *n, "D"], [_ref(f"{p}ACT", ["B", *n, "G"]), _ref(f"{p}W2", ["G", "D"])], "mac")]


def hybrid_einsums(blocks: list[str], seq: Digits) -> list[Einsum]:
    """The stack: `blocks` lists "attention" or "butterfly" per block, bottom first. Block i reads X{i} (X0 the
    input) and writes X{i+1}."""
    out: list[Einsum] = []
    hidden = ["D"]
    for i, kind in enumerate(blocks):
        p, x = f"L{i}", f"X{i}"
        n = list(seq.names)
        mix = attention_block(p, x, seq) if kind == "attention" else \
            butterfly_stages(x, f"{p}O", f"{p}M", ["B"], seq, hidden)
        out += mix
        out.append(Einsum(name=f"{p}R1", output=_ref(f"{p}R1", ["B", *n, *hidden]),
                          inputs=[_ref(x, ["B", *n, *hidden]), _ref(f"{p}O", ["B", *n, *hidden])], op="add"))
        out += ffn(p, f"{p}R1", seq)
        out.append(Einsum(name=f"{p}R2", output=_ref(f"X{i + 1}", ["B", *n, *hidden]),
                          inputs=[_ref(f"{p}R1", ["B", *n, *hidden]), _ref(f"{p}Y", ["B", *n, *hidden])], op="add"))
    return out


def hybrid_ranks(seq: Digits, batch: int, hidden: int, heads: int, ffn_dim: int, attention: bool) -> dict[str, int]:
    ranks = {"B": batch, **stage_ranks(seq, "learned"), "D": hidden, "G": ffn_dim}
    if attention:
        ranks.update({"H": heads, "E": hidden // heads, "F": hidden // heads})
        ranks.update({f"K{d}": b for d, b in zip(seq.names, seq.bounds)})
    return ranks


