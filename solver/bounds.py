"""Lower bounds every mapping obeys, from the workload and architecture alone (no search).

The segment models add them as redundant constraints so the LP relaxation sees compute and transfer time that
the exact monomial encoding hides; the search uses them as bounds for segments it has not solved yet. Each is
checked against the evaluator on generated mappings (tests/test_solver.py)."""
from __future__ import annotations

from math import prod
from typing import Optional

from mapsolve.model.nest import group_intermediates
from mapsolve.model.spec import Instance
from mapsolve.model.units import element_fj


def fewest_cycles(inst: Instance, e, unit) -> int:
    """Cycles Einsum `e` needs on `unit` at best: every lane (unit instance) busy at every step."""
    arch = inst.architecture
    lanes = unit.mesh.size * prod(arch.levels[i].mesh.size for i in arch.path(unit.name)[1:])
    ops = prod(inst.workload.ranks[r] for r in e.space)
    rate = unit.ops[e.op].per_cycle
    return -(-(-(-ops // lanes)) * rate.denominator // rate.numerator)


def compute_cycles(members, units: int) -> int:
    """A floor of a group's compute time from its members' (fewest cycles on their fastest unit, the one unit that
    can run it or None). Units run concurrently but a unit's Einsums one after another (docs/model.md §6), so the
    group takes at least: its slowest Einsum; on each unit, the sum of the Einsums only it can run; and the sum of
    all members' fewest cycles spread evenly over the `units` units."""
    acc = CyclesFloor()
    for c, u in members:
        acc = acc.plus(c, u)
    return acc.value(units)


class CyclesFloor:
    """`compute_cycles`'s sums, kept incrementally (bounds.py `ChainFloors` adds one Einsum at a time)."""

    __slots__ = ("slowest", "total", "only")

    def __init__(self, slowest: int = 0, total: int = 0, only: Optional[dict] = None):
        self.slowest, self.total, self.only = slowest, total, only or {}

    def plus(self, cycles: int, unit: Optional[str]) -> "CyclesFloor":
        only = self.only if unit is None else {**self.only, unit: self.only.get(unit, 0) + cycles}
        return CyclesFloor(max(self.slowest, cycles), self.total + cycles, only)

    def value(self, units: int) -> int:
        return max(self.slowest, -(-self.total // max(units, 1)), *self.only.values())


def _least_bits(wl, t: str) -> int:
    """The narrowest an element of t is ever stored (final width, or partial sums if narrower)."""
    return min(wl.bits(t), wl.accumulator_bits(t))


def _dram_tensors(inst: Instance, names, fused: bool):
    """(tensor, elements, produced here) for every tensor of these Einsums that DRAM backs: all but a fused
    group's intermediates."""
    wl, members = inst.workload, set(names)
    inter = group_intermediates(wl, names) if fused else frozenset()
    einsums = [e for e in wl.einsums if e.name in members]
    produced = {e.output.tensor for e in einsums}
    tensors = {t: ranks for e in einsums for t, ranks in e.tensors.items() if t not in inter}
    return [(t, prod(wl.ranks[r] for r in ranks), t in produced) for t, ranks in tensors.items()]


def dram_words(inst: Instance, names, fused: bool) -> tuple[int, int]:
    """(read bits, write bits) every mapping of these Einsums moves at DRAM (one instance), which backs every tensor
    but a fused group's intermediates: each element of an input read at least once, each element of an output
    written once (at its narrowest width)."""
    wl = inst.workload
    tensors = _dram_tensors(inst, names, fused)
    reads = sum(size * wl.bits(t) for t, size, out in tensors if not out)
    writes = sum(size * _least_bits(wl, t) for t, size, out in tensors if out)
    return reads, writes


def dram_energy(inst: Instance, names, fused: bool, unit: int = 1) -> int:
    """Energy (in `unit` fJ, per-element energies rounded down as the search prices them) of the DRAM accesses
    every mapping of these Einsums makes: `dram_words`' reads and writes, each priced at its width (an element's
    access energy never falls as its width grows, model/units.py `element_fj`)."""
    from .segment import to_unit
    wl, dram = inst.workload, inst.architecture.levels[0]
    return sum(size * to_unit(element_fj(dram, "w", _least_bits(wl, t), wl.word_bits) if out else
                              element_fj(dram, "r", wl.bits(t), wl.word_bits), unit)
               for t, size, out in _dram_tensors(inst, names, fused))


def fewest_words(inst: Instance, names, fusion: int | None) -> dict[int, tuple[int, int]]:
    """(read bits, write bits) every mapping of the segment moves at DRAM and at the fusion level: a redundant cut
    (divide by a level's word and bandwidth for cycles).

    DRAM: see `dram_words`. A group intermediate lives at the fusion level (one instance, by construction of the
    plans): written there at least once, and read from there at least once by each member that consumes it (no
    member can hold it for another).

    A recurrence's state is written there once per step, and read once per step by the recurrence (if it reads its
    previous state) and by each running reader in lock step with it: the shared loops enclosing the two take all of
    the carried rank R (model/online.py), so each member runs once per step, and its tiles below the fusion level
    are flushed per run (docs/model.md §3). R is not a rank of the state, so each of them moves the whole state
    once per step: size · R elements. Without this, a 1-pass attention segment's floor missed the running max's
    per-step traffic and CP-SAT could not close the last 0.25 % (fusemax_bert_4k, tests/test_online.py)."""
    from mapsolve.model.online import lock_step
    wl = inst.workload
    out = {0: dram_words(inst, names, fusion is not None)}
    if fusion is not None:
        members = set(names)
        einsums = [e for e in wl.einsums if e.name in members]
        by_name = {e.name: e for e in einsums}
        per_step_readers: dict[str, set[str]] = {}   # state tensor -> members reading all of it once per step
        per_step_written: set[str] = set()           # states written once per step
        for p, c, r in lock_step(wl):
            if p not in members or c not in members:
                continue
            producer, reader = by_name[p], by_name[c]
            t = producer.output.tensor
            if r in producer.output.ranks or any(i.tensor == t and r in i.ranks for i in reader.inputs):
                continue
            per_step_written.add(t)
            per_step_readers.setdefault(t, set()).add(c)
            if any(i.tensor == t for i in producer.inputs):
                per_step_readers[t].add(p)
        reads = writes = 0
        for t in group_intermediates(wl, names):
            producer = next(e for e in einsums if e.output.tensor == t)
            size = prod(wl.ranks[r] for r in producer.output.ranks)
            steps = wl.ranks[producer.recurrence] if t in per_step_written else 1
            stepped = per_step_readers.get(t, set())
            reads += sum(size * (steps if e.name in stepped else 1) for e in einsums
                         if any(i.tensor == t for i in e.inputs)) * wl.bits(t)
            writes += size * steps * _least_bits(wl, t)
        out[fusion] = (reads, writes)
    return out


class ChainFloors:
    """The floors of solver/paths.py `_floor` for consecutive runs of Einsums, in O(tensors touched) per run.

    Why: a chain of n Einsums has about n²/2 fused segments, and `_floor` costs O(n) each (it scans the workload for
    members, intermediates and DRAM's tensors): 20,301 plans took ~29 s. Here every per-Einsum and per-tensor figure
    is computed once, and `fused(i, j)` for a fixed end j and a start i decreasing by one (the search's order) adds
    only Einsum i: its tensors are the only ones whose status (read at DRAM, written at DRAM, or an intermediate
    that never reaches it) can change. Other orders recompute from scratch. Equal to `_floor` (tests)."""

    def __init__(self, inst: Instance, component: str, unit: int = 1):
        from mapsolve.model.evaluate import port_words
        from mapsolve.model.units import fj
        from .segment import to_unit
        self.port_words = port_words
        wl, arch = inst.workload, inst.architecture
        self.inst, self.component, self.unit = inst, component, unit
        self.einsums = list(wl.einsums)
        n = len(self.einsums)
        dram = arch.levels[0]
        self.compute: list[int] = []
        self.capable: list[bool] = []
        self.only: list[Optional[str]] = []     # the one unit that can run the Einsum, if only one can
        self.units = len(arch.compute_units)
        for e in self.einsums:
            us = [u for u in arch.compute_units if e.op in u.ops]
            self.capable.append(bool(us))
            self.only.append(us[0].name if len(us) == 1 else None)
            if not us:
                self.compute.append(0)
            elif component == "energy":
                self.compute.append(prod(wl.ranks[r] for r in e.space) *
                                    min(to_unit(fj(u.ops[e.op].energy_pj), unit) for u in us))
            else:
                self.compute.append(min(fewest_cycles(inst, e, u) for u in us))
        self.producer: dict[str, int] = {}
        consumers: dict[str, list[int]] = {}
        for k, e in enumerate(self.einsums):
            self.producer.setdefault(e.output.tensor, k)
            for t in e.inputs:
                consumers.setdefault(t.tensor, []).append(k)
        self.cons = {t: (min(c), max(c)) for t, c in consumers.items()}
        self.touch: list[list[str]] = [list(e.tensors) for e in self.einsums]
        self.outputs = [e.output.tensor for e in self.einsums]
        self.read_bits: dict[str, int] = {}
        self.write_bits: dict[str, int] = {}
        self.read_e: dict[str, int] = {}
        self.write_e: dict[str, int] = {}
        for e in self.einsums:
            for t, ranks in e.tensors.items():
                if t in self.read_bits:
                    continue
                size = prod(wl.ranks[r] for r in ranks)
                self.read_bits[t] = size * wl.bits(t)
                self.write_bits[t] = size * _least_bits(wl, t)
                if component == "energy":
                    self.read_e[t] = size * to_unit(element_fj(dram, "r", wl.bits(t), wl.word_bits), unit)
                    self.write_e[t] = size * to_unit(element_fj(dram, "w", _least_bits(wl, t), wl.word_bits), unit)
        self.word = dram.word(wl.word_bits)
        self.ports = list(dram.ports)
        self.n = n
        self._state: Optional[tuple] = None   # (i, j, status per tensor, sums, max, incapable count)

    def _status(self, t: str, i: int, j: int, fused: bool, members_out: set) -> str:
        if t in members_out:
            c = self.cons.get(t)
            if fused and c is not None and c[0] >= i and c[1] < j:
                return "0"
            return "w"
        return "r"

    def _value(self, st: dict, acc: int, incapable: int) -> int:
        if incapable:
            return 0
        if self.component == "energy":
            return acc + sum(self.read_e[t] if s == "r" else self.write_e[t] if s == "w" else 0
                             for t, s in st.items())
        floor = acc.value(self.units)
        reads = sum(self.read_bits[t] for t, s in st.items() if s == "r")
        writes = sum(self.write_bits[t] for t, s in st.items() if s == "w")
        for port, bw in self.ports:
            bits = self.port_words(port, reads, writes)
            floor = max(floor, -(-bits * bw.denominator // (bw.numerator * self.word)))
        return floor

    def lone(self, i: int) -> int:
        st = {t: ("w" if t == self.outputs[i] else "r") for t in self.touch[i]}
        acc = self.compute[i] if self.component == "energy" else CyclesFloor().plus(self.compute[i], self.only[i])
        return self._value(st, acc, 0 if self.capable[i] else 1)

    def fused(self, i: int, j: int) -> int:
        """The floor of Einsums i..j-1 fused (j - i >= 2)."""
        s = self._state
        if s is not None and s[1] == j and s[0] == i:
            return s[5]
        if s is None or s[1] != j or s[0] != i + 1:
            st: dict[str, str] = {}
            outs: set = set()
            acc, inc = (0 if self.component == "energy" else CyclesFloor()), 0
            start = j
        else:
            _, _, st, outs, (acc, inc), _ = s
            start = i + 1
        for k in range(start - 1, i - 1, -1):   # add Einsum k at the left
            outs.add(self.outputs[k])
            if self.component == "energy":
                acc += self.compute[k]
            else:   # the members' cycles, for `compute_cycles`
                acc = acc.plus(self.compute[k], self.only[k])
            inc += 0 if self.capable[k] else 1
            for t in self.touch[k]:
                st[t] = self._status(t, k, j, True, outs)
        # statuses of tensors touched before Einsum i came in depend on i only through "all consumers in the run",
        # which changes only when i passes a consumer (then Einsum i touches the tensor: re-evaluated above)
        value = self._value(st, acc, inc)
        self._state = (i, j, st, outs, (acc, inc), value)
        return value

    def compute_prefix(self) -> list[int]:
        """Prefix sums of the per-Einsum energy floors (compute only): C[j] - C[i] <= the floor of Einsums i..j-1
        in any grouping (for latency 0: the bound of a run never looked at); all 0 if some Einsum has no unit."""
        out = [0]
        for k in range(self.n):
            out.append(out[-1] + (self.compute[k] if self.component == "energy" and all(self.capable) else 0))
        return out
