"""Lower bounds every mapping obeys, from the workload and architecture alone (no search).

The segment models add them as redundant constraints so the LP relaxation sees compute and transfer time that
the exact monomial encoding hides; the search uses them as bounds for segments it has not solved yet. Each is
checked against the evaluator on generated mappings (tests/test_solver.py)."""
from __future__ import annotations

from math import prod

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
    member can hold it for another)."""
    wl = inst.workload
    out = {0: dram_words(inst, names, fusion is not None)}
    if fusion is not None:
        members = set(names)
        einsums = [e for e in wl.einsums if e.name in members]
        reads = writes = 0
        for t in group_intermediates(wl, names):
            size = prod(wl.ranks[r] for r in next(e.output.ranks for e in einsums if e.output.tensor == t))
            readers = sum(1 for e in einsums if any(i.tensor == t for i in e.inputs))
            reads += size * readers * wl.bits(t)
            writes += size * _least_bits(wl, t)
        out[fusion] = (reads, writes)
    return out
