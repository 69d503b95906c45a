"""Pass analysis (FuseMax, MICRO 2024): how many times a cascade must traverse a dimension, and what that costs.

A pass over a set of ranks S ends wherever an Einsum iterating S reads a value that is complete over all of S (a
finished max or sum over S, directly or through what it depends on) and has no extent along S: such a value
exists only once the traversal that made it has ended, so the reader starts a new traversal of S. Running reads of a recurrence's state do
not carry completeness over the carried rank (the value is the one at the current step), which is how the
online (1-pass) cascade avoids the barrier. `passes(S)` is the largest traversal index of any Einsum iterating S;
the cascade's passes over its input tensor T are those over the ranks of T that some Einsum reduces (for K:
the head dimension and the keys).

A tensor written in one pass over S and read in a later one *crosses* the pass boundary. Fused across it, its
whole extent along S must stay on chip (a footprint that grows with S, e.g. a row of scores per query for the
3-pass cascade); unfused, it is written to DRAM and read back in each later pass that uses it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod


@dataclass
class Crossing:
    tensor: str
    over: list[str]
    written_in: int
    read_in: list[int]
    elements: int             # the whole tensor
    along: int                # its extent along S: what must stay on chip per point of its other ranks if fused
    dram_bits: int            # unfused: written once, read back once per later pass that reads it


@dataclass
class PassReport:
    variant: str
    passes: int                                          # over the input tensors (the largest)
    inputs: dict[str, tuple[list[str], int]]             # input tensor -> (its reduced ranks S, passes over S)
    ranks: dict[str, int]                                # each reduced rank alone -> passes over it
    crossings: list[Crossing] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"variant": self.variant, "passes": self.passes,
                "inputs": {t: {"ranks": s, "passes": k} for t, (s, k) in self.inputs.items()},
                "ranks": self.ranks, "crossings": [c.__dict__ for c in self.crossings]}


def _done(wl) -> dict[str, set[str]]:
    """Tensor -> the ranks over which its value depends on a completed reduction."""
    producer = {e.output.tensor: e for e in wl.einsums}
    done: dict[str, set[str]] = {}
    for _ in range(len(wl.einsums) + 1):          # forward references (previous-state reads): to a fixpoint
        for e in wl.einsums:
            d = set(e.reduced)
            for ref in e.inputs:
                if ref.tensor not in producer:
                    continue
                inherited = done.get(ref.tensor, set())
                if ref.running is not None:
                    inherited = inherited - {producer[ref.tensor].recurrence}
                d |= inherited
            done[e.output.tensor] = d
    return done


def pass_index(wl, S: set[str]) -> dict[str, int]:
    """Einsum name -> the traversal of S it belongs to (0: it does not iterate S and needs nothing of it)."""
    producer = {e.output.tensor: e for e in wl.einsums}
    done = _done(wl)
    idx: dict[str, int] = {}
    for _ in range(len(wl.einsums) + 1):
        for e in wl.einsums:
            iterates = bool(S & set(e.space))
            k = 1 if iterates else 0
            for ref in e.inputs:
                p = producer.get(ref.tensor)
                if p is None or p is e:
                    continue
                got = done[ref.tensor] - ({p.recurrence} if ref.running is not None else set())
                # a value complete over S that has no extent along S exists only once the traversal that made it
                # has ended (a value along S, like a row of scores, streams within its pass)
                barrier = iterates and S <= got and not S & set(ref.ranks)
                k = max(k, idx.get(p.name, 0) + (1 if barrier else 0))
            idx[e.name] = k
    return idx


def analyze_passes(wl, variant: str = "base") -> PassReport:
    producer = {e.output.tensor: e for e in wl.einsums}
    reduced = set().union(*(e.reduced for e in wl.einsums))
    inputs = {}
    for e in wl.einsums:
        for ref in e.inputs:
            if ref.tensor not in producer and ref.tensor not in inputs:
                S = [r for r in ref.ranks if r in reduced]
                if S:
                    idx = pass_index(wl, set(S))
                    inputs[ref.tensor] = (S, max(idx.values()))
    ranks = {r: max(pass_index(wl, {r}).values()) for r in sorted(reduced)}
    report = PassReport(variant, max([k for _, k in inputs.values()], default=1), inputs, ranks)
    if report.passes > 1:      # the crossings of the traversal that needs the most passes (e.g. K's)
        S = max(inputs.values(), key=lambda v: (v[1], len(v[0])))[0]
        idx = pass_index(wl, set(S))
        for e in wl.einsums:
            t = e.output.tensor
            if not set(S) & set(e.output.ranks):
                continue
            later = sorted({idx[c.name] for c in wl.einsums for ref in c.inputs
                            if ref.tensor == t and idx[c.name] > idx[e.name]})
            if not later:
                continue
            elements = prod(wl.ranks[r] for r in e.output.ranks)
            along = prod(wl.ranks[r] for r in e.output.ranks if r in S)
            report.crossings.append(Crossing(t, list(S), idx[e.name], later, elements, along,
                                             elements * wl.bits(t) * (1 + len(later))))
    return report
