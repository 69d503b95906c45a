"""Tensors read under other rank names (views), and the dimensions a fused group can share (docs/model.md §1, §3).

A tensor's dimensions are positional: each Einsum names them with its own ranks (equal bounds, position by
position). Within one Einsum nothing changes: tiles, reuse and counts use that Einsum's names. Across the Einsums
of a fused group, a shared loop iterates one *dimension*: a rank of each member. It is sound only if every tensor
two members both use is tiled the same way by it in both, that is, the loop's rank indexes the same position of
that tensor in both members, or indexes it in neither. This module is the one place that rule is written; the
evaluator, the CP-SAT model and the enumerator all ask it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SharedDim:
    """One dimension a fused group may share: the rank each member iterates for it."""

    ranks: tuple[tuple[str, str], ...]      # (member Einsum, its rank), in cascade order

    @property
    def key(self) -> str:
        """A stable name: the rank, or the members' distinct ranks joined by "~" (e.g. "P~M")."""
        distinct = list(dict.fromkeys(r for _, r in self.ranks))
        return "~".join(distinct)

    def rank_of(self, einsum: str) -> str:
        return dict(self.ranks)[einsum]

    @property
    def first(self) -> str:
        return self.ranks[0][1]


def position(e, tensor: str, rank: str) -> int | None:
    """Which dimension of `tensor` Einsum `e`'s rank indexes (None if it does not index the tensor)."""
    ranks = e.tensors.get(tensor)
    if ranks is None or rank not in ranks:
        return None
    return ranks.index(rank)


def incompatibility(members, dim: dict[str, str]) -> str | None:
    """Why a loop iterating rank dim[m] in each member m would tile a tensor two members use differently, or
    None if it tiles every such tensor the same way in all of them."""
    seen: dict[str, tuple[str, int | None]] = {}
    for e in members:
        for t in e.tensors:
            where = position(e, t, dim[e.name])
            if t in seen and seen[t][1] != where:
                other, at = seen[t]
                def say(m, p):
                    return f"dimension {p} of {t} in {m}" if p is not None else f"no dimension of {t} in {m}"
                return f"it iterates {say(other, at)} but {say(e.name, where)}"
            seen.setdefault(t, (e.name, where))
    return None


def read_inside(members) -> frozenset[str]:
    """Outputs of `members` that another of them reads: a loop enclosing all of `members` must not run over a rank
    whose reduction produces one of them (the reader would see partial values, docs/model.md §3)."""
    read = {t.tensor for e in members for t in e.inputs if t.running is None}   # running reads may share the loop
    return frozenset(e.output.tensor for e in members if e.output.tensor in read)


def run_dims(group, i: int, j: int) -> list[SharedDim]:
    """The dimensions a shared loop enclosing members group[i:j] may iterate (nested fusion, docs/model.md §3): all
    of `shared_dims` for the whole group; for a proper run, those no loop enclosing the whole group may iterate (a
    rank another member lacks, or one the run may loop over because the reader of its reduction is outside the
    run). A proper run looping over a dimension the whole group could share is left out of the mapspace: it only
    repeats what a loop of the group or a member's own loops at the fusion level already offer, nearly tie for
    tie, and that symmetry made CP-SAT's proofs many times slower."""
    dims = shared_dims(group[i:j])
    if (i, j) == (0, len(group)):
        return dims
    whole = {tuple((m, r) for m, r in d.ranks if m in {e.name for e in group[i:j]}) for d in shared_dims(group)}
    return [d for d in dims if d.ranks not in whole]


def shared_dims(members, intermediates=None) -> list[SharedDim]:
    """Every dimension a loop enclosing exactly `members` (a fused group, or a run of one) may iterate, in a stable
    order.

    Candidates: a rank name every member has (the same loop by name), and the classes that tensors link (rank a of
    one member and rank b of another index the same position of a tensor both use). Kept if the class names one
    rank per member, tiles every common tensor alike (`incompatibility`) and does not cross a reduction: no member
    whose output another member reads (`read_inside`, or the given `intermediates`) reduces its rank."""
    if intermediates is None:
        intermediates = read_inside(members)
    names = [e.name for e in members]
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    users: dict[str, list] = {}
    for e in members:
        for t in e.tensors:
            users.setdefault(t, []).append(e)
    for t, es in users.items():
        for a, b in zip(es, es[1:]):
            for ra, rb in zip(a.tensors[t], b.tensors[t]):
                parent[find((a.name, ra))] = find((b.name, rb))
    classes: dict = {}
    for e in members:
        for r in e.space:
            classes.setdefault(find((e.name, r)), []).append((e.name, r))
    candidates = []
    for cls in classes.values():
        if [m for m, _ in cls] == names:
            candidates.append(dict(cls))
    common = set.intersection(*(set(e.space) for e in members))
    candidates.extend({n: r for n in names} for r in sorted(common))
    out: list[SharedDim] = []
    for dim in candidates:
        if any(e.output.tensor in intermediates and dim[e.name] in set(e.space) - set(e.output.ranks)
               for e in members):
            continue
        if incompatibility(members, dim) is not None:
            continue
        sd = SharedDim(tuple((n, dim[n]) for n in names))
        if sd not in out:
            out.append(sd)
    return sorted(out, key=lambda d: d.key)
