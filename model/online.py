"""Recurrences and running reads: the rules that make online reductions sound (docs/model.md §3).

A recurrence carries state across its carried rank R: each step of R replaces the state with the step's result.
An Einsum reading the state *running* sees it at the current step, so it must step through R in lock step with the
producer: both in one fused group, every loop over R of either one a shared loop enclosing both (then each
member's run per iteration of those loops is one step). R's loops are temporal: a spatial loop would run steps
side by side. A reader of the *final* state still sees the reduction barrier of an ordinary reduction.
"""
from __future__ import annotations

from math import prod

from .result import MappingError


def producers(wl) -> dict:
    """Tensor -> the Einsum writing it."""
    return {e.output.tensor: e for e in wl.einsums}


def running_pairs(wl) -> list[tuple[object, object, str]]:
    """(recurrence, another Einsum reading its state running, carried rank) for every such pair."""
    prod_of = producers(wl)
    out = []
    for c in wl.einsums:
        for ref in c.running_inputs():
            p = prod_of[ref.tensor]
            if p is not c and (p, c, p.recurrence) not in out:
                out.append((p, c, p.recurrence))
    return out


def lock_step(wl) -> list[tuple[str, str, str]]:
    """(producer name, reader name, carried rank) of the pairs that must share every loop over the rank."""
    return [(p.name, c.name, r) for p, c, r in running_pairs(wl)]


def temporal_only(wl) -> dict[str, set[str]]:
    """Einsum name -> the ranks it may not spread spatially: a recurrence's carried rank, in the recurrence and
    in every Einsum reading its state running."""
    out: dict[str, set[str]] = {}
    for p, c, r in running_pairs(wl):
        out.setdefault(p.name, set()).add(r)
        out.setdefault(c.name, set()).add(r)
    for e in wl.einsums:
        if e.recurrence is not None:
            out.setdefault(e.name, set()).add(e.recurrence)
    return out


def split_pair(wl, names) -> tuple[str, str, str] | None:
    """A lock-step pair (producer, reader, rank) that the group `names` holds one member of, or None. A group of
    one holding both is impossible: a group of one cannot share loops."""
    inside = set(names)
    for p, c, r in lock_step(wl):
        if (p in inside) != (c in inside) or (len(inside) == 1 and p in inside):
            return p, c, r
    return None


def lock_step_ranges(wl) -> list[list[str]]:
    """The smallest contiguous runs of Einsums holding every lock-step pair (overlapping pairs merged): each must
    lie inside one fused group."""
    names = [e.name for e in wl.einsums]
    spans = sorted(tuple(sorted((names.index(p), names.index(c)))) for p, c, _ in lock_step(wl))
    out: list[list[int]] = []
    for lo, hi in spans:
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [names[lo:hi + 1] for lo, hi in out]


def reads_final(e, tensor: str) -> bool:
    """Whether Einsum e reads `tensor`'s final value (an ordinary read: the reduction barrier applies)."""
    return any(t.tensor == tensor and t.running is None for t in e.inputs)


def check_recurrences(inst, nests, specs: dict) -> None:
    """The rules of the module docstring, on built nests (`specs`: member names -> the mapping's FusedGroup)."""
    wl = inst.workload
    by_name = {n.einsum.name: n for n in nests}
    for name, ranks in temporal_only(wl).items():
        for lp in by_name[name].loops:
            if lp.spatial and lp.factor > 1 and lp.rank in ranks:
                raise MappingError(f"einsum {name}: spatial loop over {lp.rank}, which a recurrence carries state "
                                   f"across (its steps run in order: make the loop temporal)")
    for p, c, r in running_pairs(wl):
        g = by_name[p.name].group
        why = f"einsum {c.name} reads the running state of {p.name} over {r}"
        if not g.multi or c.name not in g.einsums:
            raise MappingError(f"{why}: fuse them into one group whose shared loops cover all of {r}")
        spec = specs[g.einsums]
        both = [sl for sl in spec.shared_loops
                if sl.encloses(p.name) and sl.encloses(c.name) and sl.rank_of(p.name) == r and sl.rank_of(c.name) == r]
        got = prod(sl.factor for sl in both)
        if got != wl.ranks[r]:
            raise MappingError(f"{why}: the shared loops over {r} enclosing both multiply to {got}, not its bound "
                               f"{wl.ranks[r]} (each step of {r} must run every reader once, in order)")
