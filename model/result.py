"""What an evaluation returns: exact integer counts, energy and latency, with a JSON form for the CLI."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction


class MappingError(ValueError):
    """The mapping breaks a rule of the model; the message names the Einsum, level or tensor at fault."""


@dataclass
class TensorCounts:
    """Data movement of one tensor at one storage level, summed over instances and Einsums."""

    reads: int = 0          # all reads: served to children/units, update reads, drains, read-backs served
    writes: int = 0         # all writes: fills, read-backs received, update writes
    fills: int = 0          # words written into this level from its parent (input fills + output read-backs)
    drains: int = 0         # output words read out of this level and sent to its parent
    updates: int = 0        # read-modify-write updates arriving (each is a write)
    update_reads: int = 0   # the read half of updates (first update of an element skips it)
    readbacks: int = 0      # partial-sum words fetched back from the parent (part of fills)
    multicast: int = 0      # deliveries to children satisfied by another delivery's read (saved reads)
    reductions: int = 0     # updates from children summed in the network before arriving (saved updates)

    def add(self, other: "TensorCounts") -> None:
        for k in _COUNT_FIELDS:   # (dataclasses.asdict deep-copies: a third of an evaluation's time)
            setattr(self, k, getattr(self, k) + getattr(other, k))


_COUNT_FIELDS = tuple(f.name for f in fields(TensorCounts))


@dataclass
class UnitCounts:
    ops: int = 0
    cycles: int = 0          # summed over groups (the unit's busy time)
    energy_fj: int = 0
    capacity_ops: int = 0    # cycles x units x per-cycle rate (integer part), for utilisation


@dataclass
class GroupResult:
    einsums: list[str]
    fusion_level: str | None
    latency_cycles: int
    unit_cycles: dict[str, int]
    level_cycles: dict[str, int]
    bound_by: str
    # the group's own energy events, (count, fJ each): accesses at every level and operations. Groups run in
    # sequence, so a group's cost is its own; the search prices a mapping's pieces with these (solver/incumbent.py)
    energy_events: list[tuple[int, int]] = field(default_factory=list)

    @property
    def energy_fj(self) -> int:
        return sum(n * e for n, e in self.energy_events)


@dataclass
class Result:
    energy_fj: int
    latency_cycles: int
    counts: dict[tuple[str, str], TensorCounts]           # (level, tensor) -> counts
    level_energy_fj: dict[tuple[str, str], int]           # (level, tensor) -> energy
    units: dict[str, UnitCounts]
    groups: list[GroupResult]
    capacity_required: dict[str, int]                      # level -> words (of its access width) needed,
                                                           # rounded up from capacity_bits_required
    capacity_detail: dict[str, dict[str, int]] = field(default_factory=dict)
    utilization: dict[str, Fraction] = field(default_factory=dict)
    op_energies: list[tuple[int, int]] = field(default_factory=list)  # per Einsum: (ops, fJ per op)
    capacity_bits_required: dict[str, int] = field(default_factory=dict)  # level -> bits per instance needed
    access_energies: list[tuple[int, int]] = field(default_factory=list)  # (reads or writes, fJ per element)

    def to_json(self) -> dict:
        levels: dict[str, dict] = {}
        for (lv, t), c in self.counts.items():
            entry = levels.setdefault(lv, {"energy_fj": 0, "tensors": {}})
            e = self.level_energy_fj[(lv, t)]
            entry["energy_fj"] += e
            entry["tensors"][t] = {**asdict(c), "energy_fj": e}
        return {
            "energy_fj": self.energy_fj,
            "latency_cycles": self.latency_cycles,
            "breakdown": {
                "levels": levels,
                "compute": {u: {**asdict(c), "utilization": float(self.utilization.get(u, 0))}
                            for u, c in self.units.items()},
                "groups": [{**{k: v for k, v in asdict(g).items() if k != "energy_events"}, "energy_fj": g.energy_fj}
                           for g in self.groups],
                "capacity_words": {lv: {"required": req, "tiles": self.capacity_detail.get(lv, {})}
                                   for lv, req in self.capacity_required.items()},
                "capacity_bits": {lv: {"required": req} for lv, req in self.capacity_bits_required.items()},
            },
        }
