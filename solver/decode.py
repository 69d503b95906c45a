"""From a CP-SAT solution back to the mapping spec: factors from exponents, loop order from pairwise literals."""
from __future__ import annotations

from math import prod

from typing import TYPE_CHECKING

from mapsolve.model.spec import EinsumMapping, FusedGroup, LevelMapping, Loop, SharedLoop, SpatialLoop

if TYPE_CHECKING:
    from .segment import Slot


def decode(sm, value) -> tuple[list[EinsumMapping], FusedGroup | None]:
    """The mapping of segment model `sm` in the solution given by `value(var)` (unit loops are left out)."""
    def factor(s: Slot) -> int:
        return prod(p ** value(ev.var) for p, ev in s.exps.items())

    def ordered(store, slots: list[Slot]) -> list[Slot]:
        def outside_count(s: Slot) -> int:
            return sum(1 for o in slots if o is not s and value(sm._before(store, s.pos, s.rank, o.rank)))
        return sorted(slots, key=lambda s: -outside_count(s))

    names = sm.arch.levels
    group = None
    if sm.fusion is not None and len(sm.names) > 1:
        shared = []
        everyone = frozenset(sm.names)
        order = {n: i for i, n in enumerate(sm.names)}
        for pos, level in enumerate(sm.top):
            # per level: larger runs outside the runs they contain (the tree), each run's loops in their order
            runs = sorted({s.span for s in sm.shared_slots if s.pos == pos},
                          key=lambda sp: (-len(sp), min(order[m] for m in sp)))
            for span in runs:
                at = [s for s in sm.shared_slots if s.pos == pos and s.span == span]
                for s in ordered(sm.shared_order, at):
                    if factor(s) > 1:
                        d = sm.shared_dim[id(s)]
                        shared.append(SharedLoop(level=names[level].name, rank=d.first, factor=factor(s),
                                                 renames={m: r for m, r in d.ranks if r != d.first},
                                                 einsums=None if span == everyone else
                                                 sorted(span, key=order.get)))
        group = FusedGroup(einsums=list(sm.names), fusion_level=names[sm.fusion].name, shared_loops=shared)
    maps = []
    for e in sm.einsums:
        c = next(c for c in sm.cands[e.name] if value(c.choose))
        levels = []
        for pos, level in enumerate(c.path):
            temporal = [s for s in c.slots if not s.spatial and not s.shared and s.pos == pos]
            loops = [Loop(rank=s.rank, factor=factor(s)) for s in ordered(c.order, temporal) if factor(s) > 1]
            spatial = [SpatialLoop(rank=s.rank, factor=factor(s), axis=s.axis)
                       for s in c.slots if s.spatial and s.pos == pos and factor(s) > 1]
            keep = [t for t in c.tensors if _truth(value, c.keep[(t, pos)])]
            levels.append(LevelMapping(level=names[level].name, keep=keep, temporal=loops, spatial=spatial))
        maps.append(EinsumMapping(einsum=e.name, compute_unit=c.unit.name, levels=levels))
    return maps, group


def _truth(value, lit) -> bool:
    return bool(lit) if isinstance(lit, int) else bool(value(lit))
