"""What a cascade computes: a numpy interpreter of Einsum cascades, recurrences stepped one at a time.

It is the oracle for "the 1-, 2- and 3-pass attention cascades produce the same tensor" and knows nothing about
mappings or costs. Op semantics per point of the iteration space: mac multiplies its inputs and sums over the
reduced ranks; add sums its inputs (and over reduced ranks); max likewise with max; mul multiplies; sub and exp
take the first input minus the others (exp of that); div the first over the second; copy the first.

Recurrences: the Einsums from the first to the last one taking part in a running read are run in lock step over
the carried rank (step r: each of them, in cascade order, on its slice at r). A recurrence's state is one live
array, replaced at each step, starting at -inf (max) or 0; a running read reads the live state, which is the
previous step's value before the producer's turn and the current one after it: exactly the declared semantics.
"""
from __future__ import annotations

import numpy as np


def _combine(op, xs):
    if op in ("mac", "mul"):
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out
    if op == "add":
        return sum(xs[1:], xs[0])
    if op == "max":
        out = xs[0]
        for x in xs[1:]:
            out = np.maximum(out, x)
        return out
    if op in ("sub", "exp"):
        d = xs[0] - sum(xs[1:], np.zeros_like(xs[0])) if len(xs) > 1 else xs[0]
        return np.exp(d) if op == "exp" else d
    if op == "div":
        return xs[0] / xs[1]
    if op == "copy":
        return xs[0]
    raise ValueError(op)


def _aligned(arr, ranks, space):
    """`arr` indexed by `ranks`, as an array broadcastable over `space`."""
    perm = [ranks.index(r) for r in space if r in ranks]
    a = np.transpose(arr, perm) if perm else arr
    shape = [a.shape[[r for r in space if r in ranks].index(r)] if r in ranks else 1 for r in space]
    return a.reshape(shape)


def _apply(e, values, bounds, fix=None):
    """Einsum e over its space (with rank fix=(R, r) pinned to one value), as an array over its output ranks (R
    dropped when pinned)."""
    space = [r for r in e.space if fix is None or r != fix[0]]
    xs = []
    for ref in e.inputs:
        arr, ranks = values[ref.tensor], list(ref.ranks)
        if fix is not None and fix[0] in ranks:
            arr = np.take(arr, fix[1], axis=ranks.index(fix[0]))
            ranks.remove(fix[0])
        xs.append(np.broadcast_to(_aligned(arr, ranks, space), [bounds[r] for r in space]))
    full = _combine(e.op, xs)
    out_ranks = [r for r in e.output.ranks if fix is None or r != fix[0]]
    reduced = tuple(i for i, r in enumerate(space) if r not in out_ranks)
    if reduced:
        full = full.max(axis=reduced) if e.op == "max" else full.sum(axis=reduced)
    kept = [r for r in space if r in out_ranks]
    return np.transpose(full, [kept.index(r) for r in out_ranks]) if out_ranks else full


def run(workload, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor's final value."""
    bounds = workload.ranks
    values = dict(inputs)
    es = list(workload.einsums)
    prod_of = {e.output.tensor: i for i, e in enumerate(es)}
    locked = set()
    for i, e in enumerate(es):
        for ref in e.running_inputs():
            locked.update({i, prod_of[ref.tensor]})
    lo, hi = (min(locked), max(locked)) if locked else (len(es), len(es) - 1)
    for e in es[:lo]:
        values[e.output.tensor] = _apply(e, values, bounds)
    if locked:
        carried = {es[i].recurrence for i in locked if es[i].recurrence}
        if len(carried) != 1:
            raise ValueError(f"lock-step Einsums carry {sorted(carried)}: one rank expected")
        R = carried.pop()
        for e in es[lo:hi + 1]:
            shape = [bounds[r] for r in e.output.ranks]
            init = -np.inf if e.recurrence and e.op == "max" else 0.0
            values[e.output.tensor] = np.full(shape, init)
        for r in range(bounds[R]):
            for e in es[lo:hi + 1]:
                if R not in e.space:
                    raise ValueError(f"{e.name} is between lock-step Einsums but does not iterate {R}")
                step = _apply(e, values, bounds, (R, r))
                if e.recurrence == R:
                    values[e.output.tensor] = step
                else:
                    idx = [slice(None)] * len(e.output.ranks)
                    idx[e.output.ranks.index(R)] = r
                    values[e.output.tensor][tuple(idx)] = step
    for e in es[hi + 1:]:
        values[e.output.tensor] = _apply(e, values, bounds)
    return values
