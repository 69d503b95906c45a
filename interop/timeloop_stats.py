"""Reading timeloop-model's `timeloop-model.stats.txt` back into counts, to compare them with `mapsolve evaluate`.

Only what docs/interop.md compares: the compute count, and per storage level and data space the scalar reads,
fills and updates summed over the utilised instances (Timeloop prints them per instance).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class TimeloopCounts:
    computes: int = 0
    cycles: int = 0
    energy_fj: float = 0.0   # fJ per compute (Total) x computes
    # (level, data space) -> {"reads", "fills", "updates"}: totals over the utilised instances
    levels: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)


_LEVEL = re.compile(r"^=== (.+) ===$")
_SPACE = re.compile(r"^    (\S.*):$")
_VALUE = re.compile(r"^\s+(.+?)\s*:\s*([-0-9.e+]+)")


def parse_stats(text: str) -> TimeloopCounts:
    """Counts from a stats file; raises ValueError when it has no compute count (not a stats file)."""
    out = TimeloopCounts()
    level = space = None
    per: dict[str, float] = {}

    def close() -> None:
        if level is not None and space is not None and "Scalar reads (per-instance)" in per:
            n = per.get("Utilized instances (max)", 1)
            out.levels[(level, space)] = {k: round(per[f"Scalar {k} (per-instance)"] * n)
                                          for k in ("reads", "fills", "updates")}

    in_stats = False
    total_per_compute = 0.0
    for line in text.splitlines():
        if line.startswith("Networks") or line.startswith("Operational Intensity"):
            close()
            level = space = None
            in_stats = False
            continue
        m = _LEVEL.match(line)
        if m:
            close()
            level, space, per, in_stats = m.group(1), None, {}, False
            continue
        if line.strip() == "STATS":
            in_stats = True
            continue
        if not in_stats or level is None:
            if line.startswith("Cycles:"):
                out.cycles = int(line.split(":")[1])
            elif line.startswith("Computes = "):
                out.computes = int(line.split("=")[1])
            elif line.strip().startswith("Total ") and "=" in line:
                total_per_compute = float(line.split("=")[1])
            continue
        m = _SPACE.match(line)
        if m:
            close()
            space, per = m.group(1), {}
            continue
        m = _VALUE.match(line)
        if m:
            per[m.group(1)] = float(m.group(2))
    close()
    if out.computes == 0:
        raise ValueError("no 'Computes = N' line: not a timeloop-model stats file")
    out.energy_fj = total_per_compute * out.computes
    return out


def timeloop_totals(exports, stats: dict[str, TimeloopCounts]) -> tuple[int, dict[tuple[str, str], dict[str, int]]]:
    """(computes, (mapsolve level, tensor) -> reads/fills/updates) summed over the Einsums of an export, from
    each Einsum's stats (`stats[einsum]`), with Timeloop's names turned back into mapsolve's."""
    computes = 0
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for ex in exports:
        c = stats[ex.einsum]
        computes += c.computes
        for (lv, ds), v in c.levels.items():
            acc = totals.setdefault((ex.levels[lv], ex.data_spaces[ds]), {"reads": 0, "fills": 0, "updates": 0})
            for k in acc:
                acc[k] += v[k]
    return computes, totals


def mapsolve_as_timeloop(result) -> dict[tuple[str, str], dict[str, int]]:
    """mapsolve's counts (`Result.counts`) in Timeloop's terms: Timeloop does not count the read that drains an
    output tile to its parent at the child (the parent's update is its only trace), so reads are mapsolve's
    reads less its drains; fills (read-backs included) and updates are the same quantities."""
    return {key: {"reads": c.reads - c.drains, "fills": c.fills, "updates": c.updates}
            for key, c in result.counts.items()}
