"""Human-readable output: the energy/latency summary and the mapping as an indented loop nest."""
from __future__ import annotations

import typer

from mapsolve.model.result import Result
from mapsolve.model.spec import Instance, Mapping
from mapsolve.model.variants import select


def _energy(fj: int) -> str:
    for unit, scale in (("J", 10**15), ("mJ", 10**12), ("uJ", 10**9), ("nJ", 10**6), ("pJ", 10**3)):
        if fj >= scale:
            return f"{fj / scale:.4g} {unit}"
    return f"{fj} fJ"


def print_result(inst: Instance, mapping: Mapping, result: Result, echo=typer.echo) -> None:
    freq = inst.architecture.frequency_mhz
    time = f" ({float(result.latency_cycles) / float(freq):.4g} us at {freq} MHz)" if freq else ""
    echo(f"energy   {result.energy_fj} fJ = {_energy(result.energy_fj)}")
    echo(f"latency  {result.latency_cycles} cycles{time}")
    echo("energy by level and tensor:")
    levels: dict[str, int] = {}
    for (lv, _t), e in result.level_energy_fj.items():
        levels[lv] = levels.get(lv, 0) + e
    for lv in [lv.name for lv in inst.architecture.levels]:
        if lv not in levels:
            continue
        share = 100 * levels[lv] / result.energy_fj if result.energy_fj else 0
        echo(f"  {lv:<10} {_energy(levels[lv]):>12} {share:5.1f}%")
        for (lv2, t), c in sorted(result.counts.items()):
            if lv2 == lv and result.level_energy_fj[(lv2, t)]:
                echo(f"    {t:<8} {_energy(result.level_energy_fj[(lv2, t)]):>12}  reads {c.reads} "
                     f"writes {c.writes}")
    for u, c in result.units.items():
        if c.ops:
            share = 100 * c.energy_fj / result.energy_fj if result.energy_fj else 0
            echo(f"  {u:<10} {_energy(c.energy_fj):>12} {share:5.1f}%  ops {c.ops} cycles {c.cycles} "
                 f"utilisation {float(result.utilization.get(u, 0)):.3f}")
    echo("groups (run in sequence):")
    for g in result.groups:
        where = f" fused at {g.fusion_level}" if g.fusion_level and len(g.einsums) > 1 else ""
        echo(f"  {'+'.join(g.einsums)}{where}: {g.latency_cycles} cycles, bound by {g.bound_by}")
    echo("mapping:")
    for line in loop_nest_lines(inst, mapping):
        echo("  " + line)


def loop_nest_lines(inst: Instance, mapping: Mapping) -> list[str]:
    """The mapping as indented loops: a fused group's shared loops once, each above the run of members it encloses
    (a tree, for nested fusion)."""
    lines: list[str] = []
    by_name = {em.einsum: em for em in mapping.einsums}
    grouped = {n: g for g in mapping.groups for n in g.einsums}
    levels = [lv.name for lv in inst.architecture.levels]
    done: set[str] = set()

    def member(name: str, depth: int) -> None:
        em = by_name[name]
        lines.append("  " * depth + f"{name} on {em.compute_unit}:")
        d = depth + 1
        for lm in em.levels:
            keep = ",".join(lm.keep) or "-"
            lines.append("  " * d + f"[{lm.level}: {keep}]")
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
