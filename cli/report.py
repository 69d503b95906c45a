"""Human-readable output: the energy/latency summary, the mapping as an indented loop nest with its tiles and
buffer occupancy, and the gain against baselines. Figures are in engineering units here; `--json` keeps the exact
integers (docs/results.md)."""
from __future__ import annotations

import textwrap
from decimal import Decimal
from typing import Optional

import typer

from mapsolve.model.evaluate import kept_tiles, occupancy
from mapsolve.model.nest import build_nests, group_copy_bits
from mapsolve.model.result import Result
from mapsolve.model.spec import Instance, Mapping
from mapsolve.model.variants import select

LEGEND = ("legend: [L: T[R:n,...] size, ...] opens level L's loops and lists the tensors L keeps: each tile's "
          "extent per rank and its size (w: words of L's access width; else elements x bits), then what L holds "
          "per instance against its capacity (at and above a fused group's fusion level: all the group's copies). [L: -]: L keeps no tensor (every operand bypasses it); the loops "
          "under it are still L's. for: a temporal loop; spatial-for ... on x: spread over the x axis of the "
          "instances below L. Shared loops (# L, shared) run around every member of a fused group they enclose.")


def sig4(x: float) -> str:
    """4 significant digits, trailing zeros kept (`67.00`); whole numbers from 1000 up (`1234`)."""
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:#.4g}"


def energy(fj: int) -> str:
    """fJ in engineering units, 4 significant digits: `3.905 nJ`."""
    for unit, scale in (("J", 10**15), ("mJ", 10**12), ("µJ", 10**9), ("nJ", 10**6), ("pJ", 10**3)):
        if abs(fj) >= scale:
            return f"{sig4(fj / scale)} {unit}"
    return f"{fj} fJ"


def duration(cycles: int, frequency_mhz: Optional[Decimal]) -> str:
    """Cycles as time at the clock (`16.23 ms`), or `N cycles` when the instance gives no clock."""
    if not frequency_mhz:
        return f"{cycles:,} cycles"
    seconds = Decimal(cycles) / (Decimal(frequency_mhz) * 10**6)
    for unit, scale in (("s", 1), ("ms", Decimal("1e-3")), ("µs", Decimal("1e-6"))):
        if seconds >= scale:
            return f"{sig4(float(seconds / scale))} {unit}"
    return f"{sig4(float(seconds / Decimal('1e-9')))} ns"


def size(bits: int) -> str:
    """Bits as B, KiB, MiB, GiB (binary, 4 significant digits), or bits when not whole bytes."""
    if bits % 8:
        return f"{bits} b"
    n = bits // 8
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n} B"


def ratio(base: int, mine: int, what: str) -> str:
    """`2.487x less energy` (the baseline over this mapping), `equal energy`, `1.1x more latency`."""
    if base == mine:
        return f"equal {what}"
    if mine == 0 or base == 0:
        return f"{what} {mine} vs {base}"
    r = base / mine
    return f"{r:.4g}x less {what}" if r > 1 else f"{1 / r:.4g}x more {what}"


def print_result(inst: Instance, mapping: Mapping, result: Result, echo=typer.echo, baselines=()) -> None:
    """The evaluation of `mapping`; `baselines`: (label, Baseline or None, why not) to compare it with."""
    freq = inst.architecture.frequency_mhz
    clock = f" ({result.latency_cycles:,} cycles at {freq} MHz)" if freq else ""
    echo(f"energy   {energy(result.energy_fj)}")
    echo(f"latency  {duration(result.latency_cycles, freq)}{clock}")
    for label, base, why in baselines:
        if base is None:
            if why:
                echo(f"against  {label}: not available ({why})")
            continue
        echo(f"against  {label}: {energy(base.energy_fj)}, {duration(base.latency_cycles, freq)} -> this mapping "
             f"has {ratio(base.energy_fj, result.energy_fj, 'energy')}, "
             f"{ratio(base.latency_cycles, result.latency_cycles, 'latency')}")
    echo("energy by level and tensor:")
    levels: dict[str, int] = {}
    for (lv, _t), e in result.level_energy_fj.items():
        levels[lv] = levels.get(lv, 0) + e
    for lv in [lv.name for lv in inst.architecture.levels]:
        if lv not in levels:
            continue
        share = 100 * levels[lv] / result.energy_fj if result.energy_fj else 0
        echo(f"  {lv:<10} {energy(levels[lv]):>12} {share:5.1f}%")
        for (lv2, t), c in sorted(result.counts.items()):
            if lv2 == lv and result.level_energy_fj[(lv2, t)]:
                echo(f"    {t:<8} {energy(result.level_energy_fj[(lv2, t)]):>12}  reads {c.reads:,} "
                     f"writes {c.writes:,}")
    for u, c in result.units.items():
        if c.ops:
            share = 100 * c.energy_fj / result.energy_fj if result.energy_fj else 0
            echo(f"  {u:<10} {energy(c.energy_fj):>12} {share:5.1f}%  ops {c.ops:,} cycles {c.cycles:,} "
                 f"utilisation {float(result.utilization.get(u, 0)):.3f}")
    echo("groups (run in sequence):")
    for g in result.groups:
        where = f" fused at {g.fusion_level}" if g.fusion_level and len(g.einsums) > 1 else ""
        echo(f"  {'+'.join(g.einsums)}{where}: {duration(g.latency_cycles, freq)}, bound by {g.bound_by}")
    echo("occupancy (per instance, the fullest group; against capacity):")
    wb = inst.workload.word_bits
    for lv in inst.architecture.levels:
        need = result.capacity_bits_required.get(lv.name, 0)
        echo(f"  {lv.name:<10} {held(need, lv.capacity(wb))}")
    echo("mapping:")
    for line in textwrap.wrap(LEGEND, 110, initial_indent="  ", subsequent_indent="          "):
        echo(line)
    for line in loop_nest_lines(inst, mapping):
        echo("  " + line)


def held(bits: int, capacity: Optional[int]) -> str:
    """`412 KiB / 1 MiB (40.2 %)`, or `412 KiB (unbounded)`."""
    if capacity is None:
        return f"{size(bits)} (unbounded)"
    pct = f"{100 * bits / capacity:.1f} %" if capacity else "-"
    return f"{size(bits)} / {size(capacity)} ({pct})"


class Tiles:
    """Per (Einsum, level): the tiles it keeps there and what that level holds for it per instance (its group's
    shared copies at and above the fusion level, its own tiles below), from mapsolve.model's own quantities."""

    def __init__(self, inst: Instance, mapping: Mapping):
        plain = select(inst, mapping.variant)
        self.arch = plain.architecture
        self.wb = plain.workload.word_bits
        self.nests = {n.einsum.name: n for n in build_nests(plain, mapping)}
        self.occupancy = {occ.einsums: occ for occ in occupancy(plain, list(self.nests.values()))}
        members: dict[tuple, list] = {}
        for n in self.nests.values():
            members.setdefault(n.group.einsums, []).append(n.einsum)
        self.copy_bits = {g: {t: group_copy_bits(plain.workload, es, t) for e in es for t in e.tensors}
                          for g, es in members.items()}

    def line(self, einsum: str, level: str) -> str:
        n = self.nests[einsum]
        li = next(i for i, lv in enumerate(self.arch.levels) if lv.name == level)
        lv = self.arch.levels[li]
        tiles = kept_tiles(n, li, self.copy_bits[n.group.einsums])
        if not tiles:
            return f"[{level}: -]"
        word = lv.word(self.wb)
        parts = []
        pos = n.path.index(li)
        for t, (elements, bits) in tiles.items():
            shape = ",".join(f"{r}:{x}" for r, x in n.tile_shape(pos, t).items())
            width = bits // elements if elements else 0
            amount = f"{elements:,} w" if width == word else f"{elements:,}x{width}b"
            parts.append(f"{t}[{shape}] {amount}")
        f = n.group.fusion_level
        bits = self.occupancy[n.group.einsums].bits[level] if f is not None and li <= f else \
            sum(b for _, b in tiles.values())
        return f"[{level}: {', '.join(parts)}]  {held(bits, lv.capacity(self.wb))}"


def loop_nest_lines(inst: Instance, mapping: Mapping) -> list[str]:
    """The mapping as indented loops: a fused group's shared loops once, each above the run of members it encloses
    (a tree, for nested fusion); each level's line with its tiles and occupancy."""
    lines: list[str] = []
    by_name = {em.einsum: em for em in mapping.einsums}
    grouped = {n: g for g in mapping.groups for n in g.einsums}
    levels = [lv.name for lv in inst.architecture.levels]
    tiles = Tiles(inst, mapping)
    done: set[str] = set()

    def member(name: str, depth: int) -> None:
        em = by_name[name]
        lines.append("  " * depth + f"{name} on {em.compute_unit}:")
        d = depth + 1
        for lm in em.levels:
            lines.append("  " * d + tiles.line(name, lm.level))
            for lp in lm.temporal:
                if lp.factor > 1:
                    lines.append("  " * d + f"for {lp.rank} in [0:{lp.factor})")
                    d += 1
            for sp in lm.spatial:
                if sp.factor > 1:
                    lines.append("  " * d + f"spatial-for {sp.rank} in [0:{sp.factor}) on {sp.axis}")
                    d += 1
        done.add(name)

    def tree(g, run: list[str], loops: list, depth: int) -> None:
        """Members of `run` in order; a loop of `loops` (nest order) enclosing the next one is printed above the
        run it encloses."""
        everyone = list(g.einsums)
        i = 0
        while i < len(run):
            sl = next((x for x in loops if x.encloses(run[i])), None)
            if sl is None:
                member(run[i], depth)
                i += 1
                continue
            span = [m for m in run if sl.encloses(m)]
            who = "" if sl.einsums is None or span == everyone else f" by {'+'.join(span)}"
            lines.append("  " * depth + f"for {sl.rank} in [0:{sl.factor})   # {sl.level}, shared{who}")
            inner = [x for x in loops[loops.index(sl) + 1:] if all(sl.encloses(m) for m in (x.einsums or everyone))]
            tree(g, span, inner, depth + 1)
            i += len(span)

    for e in select(inst, mapping.variant).workload.einsums:   # the cascade this mapping maps
        if e.name in done:
            continue
        g = grouped.get(e.name)
        members = g.einsums if g else [e.name]
        if g and len(members) > 1:
            lines.append(f"fused group {'+'.join(members)} (intermediates at {g.fusion_level})")
            loops = sorted((sl for sl in g.shared_loops if sl.factor > 1),
                           key=lambda sl: (levels.index(sl.level) if sl.level in levels else 0,
                                           g.shared_loops.index(sl)))
            tree(g, list(members), loops, 1)
        else:
            for name in members:
                member(name, 0)
    return lines
