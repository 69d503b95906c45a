"""The segment plans of an instance: every run of consecutive Einsums with a fusion level (and the levels above
it), or a lone Einsum, that the search may give a model. Counted and produced in the search's order without being
listed: a chain of n Einsums has ~n²/2 of them (2 million at n = 2,000)."""
from __future__ import annotations

from typing import Optional

from mapsolve.model.online import lock_step
from mapsolve.model.spec import Instance


class PlanSpace:
    """Every segment plan (consecutive Einsums, fusion level, levels above it) without listing them: a chain of
    n Einsums has ~n²/2 fused runs, and listing them (each with its names) cost O(n³) — far beyond any time limit
    at n = 2,000. A plan is a key (i, j, f, top): Einsums i..j-1, fusion level f (None alone); `plan(key)` makes
    the tuple the models take. The fusion options (f, top) do not depend on the run, so they are computed once.
    A run is no plan when it holds one member of a lock-step pair (`split`)."""

    def __init__(self, inst: Instance):
        wl, arch = inst.workload, inst.architecture
        self.names = [e.name for e in wl.einsums]
        self.index = {nm: i for i, nm in enumerate(self.names)}
        self.pairs = [(self.index[p], self.index[c]) for p, c, _ in lock_step(wl)]
        self.options: list[tuple[int, tuple[int, ...]]] = []
        for f, lv in enumerate(arch.levels):
            if f == 0:
                continue
            tops = {tuple(p[:p.index(f)]) for u in arch.compute_units for p in [arch.path(u.name)] if f in p}
            for top in sorted(tops):
                if all(arch.levels[x].mesh.size == 1 for x in (*top[1:], f)):
                    self.options.append((f, top))
        self.n = len(self.names)

    def split(self, i: int, j: int) -> bool:
        """Whether Einsums i..j-1 hold exactly one of a lock-step pair (or a lone member of one): `split_pair`."""
        for p, c in self.pairs:
            if (i <= p < j) != (i <= c < j) or (j - i == 1 and i <= p < j):
                return True
        return False

    def count(self) -> int:
        n = self.n
        if not self.pairs:
            return n + len(self.options) * (n * (n - 1) // 2)
        lone = sum(1 for i in range(n) if not self.split(i, i + 1))
        return lone + len(self.options) * sum(1 for j in range(2, n + 1) for i in range(j - 1)
                                              if not self.split(i, j))

    def order(self):
        """Keys in the search's order: lone Einsums first, then fused runs by their last Einsum, shortest first."""
        for i in range(self.n):
            if not self.split(i, i + 1):
                yield (i, i + 1, None, ())
        if not self.options:
            return
        for j in range(2, self.n + 1):
            for i in range(j - 2, -1, -1):
                if not self.split(i, j):
                    for f, top in self.options:
                        yield (i, j, f, top)

    def plan(self, key) -> tuple:
        i, j, f, top = key
        return (tuple(self.names[i:j]), f, top)

    def key(self, plan) -> Optional[tuple]:
        """The key of a plan tuple, or None if it is no plan of this instance."""
        names, f, top = plan
        if not names or any(nm not in self.index for nm in names):
            return None
        i = self.index[names[0]]
        j = i + len(names)
        if tuple(self.names[i:j]) != tuple(names) or self.split(i, j):
            return None
        if len(names) == 1:
            return (i, j, None, ()) if f is None else None
        return (i, j, f, tuple(top)) if (f, tuple(top)) in self.options else None

    def __contains__(self, plan) -> bool:
        return self.key(plan) is not None


def segment_plans(inst: Instance) -> list[tuple[tuple[str, ...], Optional[int], tuple[int, ...]]]:
    """Every (consecutive Einsums, fusion level, levels above it) worth a model, listed (small instances: each
    plan holds its names; the search itself uses `PlanSpace`)."""
    space = PlanSpace(inst)
    plans = []
    for i in range(space.n):
        if not space.split(i, i + 1):
            plans.append(space.plan((i, i + 1, None, ())))
        for j in range(i + 2, space.n + 1):
            if not space.split(i, j):
                plans.extend(space.plan((i, j, f, top)) for f, top in space.options)
    return plans


def plan_count(inst: Instance) -> int:
    """How many segment plans the search may look at (without listing them; the variants' together)."""
    from mapsolve.model.variants import alternatives
    if inst.workload.variants:
        return sum(PlanSpace(alt).count() for _, alt in alternatives(inst))
    return PlanSpace(inst).count()
