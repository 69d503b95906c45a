"""`mapsolve pareto INSTANCE`: the exact energy–latency front (solver/pareto.py), as a table, JSON and a plot;
and `verify --pareto`, the front checked against the enumerator's."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import (EXIT_BUG, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_MISMATCH, EXIT_NO_SOLUTION, app, check_output_path,
                  check_run_options, fail, load_instance_or_fail, with_nesting, write_atomically)


def check_caps(max_latency: Optional[int], max_energy: Optional[int]) -> dict:
    """The caps as the solver takes them (exit 2 naming the flag when one is not a positive integer)."""
    caps = {}
    for flag, key, value in (("--max-latency", "latency", max_latency), ("--max-energy", "energy", max_energy)):
        if value is None:
            continue
        if value <= 0 or value >= 2**62:
            fail(f"{flag} must be a positive integer ({'cycles' if key == 'latency' else 'fJ'}) below 2^62, "
                 f"not {value}")
        caps[key] = value
    return caps


def select(points: list, k: Optional[int]) -> list:
    """At most k points spread over the front by latency (both ends always kept)."""
    if k is None or len(points) <= k:
        return points
    if k == 1:
        return [points[-1]]
    idx = sorted({round(x * (len(points) - 1) / (k - 1)) for x in range(k)})
    return [points[i] for i in idx]


def front_json(inst, front, shown) -> dict:
    gap = front.largest_gap()
    return {
        "instance": inst.name,
        "complete": front.complete,
        "points_found": len(front.points),
        "points": [{"energy_fj": p.energy_fj, "latency_cycles": p.latency_cycles, "proven": p.proven,
                    "fused_groups": p.groups, "variant": p.mapping.variant,
                    "mapping": p.mapping.model_dump(mode="json")} for p in shown],
        "lower_front": [{"energy": e, "latency_cycles": l} for e, l in front.lower],
        "energy_unit_fj": front.energy_unit_fj,
        "caps": front.caps or None,
        "largest_gap": gap,
        "unfinished_segments": front.unfinished,
        "pruned_segments": front.pruned,
        "segment_solves": len(front.segments),
        "seconds": round(front.seconds, 4),
        "deterministic_time": round(front.deterministic_time, 4),
    }


def plot_front(front, shown, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.2))
    xs = [p.latency_cycles for p in front.points]
    ys = [p.energy_fj / 1e6 for p in front.points]
    ax.step(xs, ys, where="post", color="0.6", lw=1)
    ax.scatter([p.latency_cycles for p in shown if p.proven], [p.energy_fj / 1e6 for p in shown if p.proven],
               color="C0", label="proven non-dominated", zorder=3)
    un = [p for p in shown if not p.proven]
    if un:
        ax.scatter([p.latency_cycles for p in un], [p.energy_fj / 1e6 for p in un], color="C1", marker="x",
                   label="found, not proven", zorder=3)
    if front.lower and not front.complete:
        ax.scatter([l for _, l in front.lower], [e * front.energy_unit_fj / 1e6 for e, _ in front.lower],
                   color="C3", marker="_", label="lower front", zorder=2)
    ax.set_xlabel("latency (cycles)")
    ax.set_ylabel("energy (nJ)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@app.command("pareto")
def pareto_command(
    instance: Path = typer.Argument(..., help="Instance JSON file."),
    points: Optional[int] = typer.Option(None, "--points", "-k", help="Show (and write) at most K points spread "
                                         "over the front, and spend at most K ε-solves per segment, spread over "
                                         "its front (both ends first, then the widest open gap); the largest "
                                         "gap between neighbours is stated."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the front as JSON to this file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Plot the front to this PNG (pip install '.[plot]')."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", "-t", help="Seconds for the whole front."),
    deterministic_time: Optional[float] = typer.Option(None, "--deterministic-time", help="CP-SAT deterministic "
                                                       "seconds for the whole front (load-independent)."),
    max_latency: Optional[int] = typer.Option(None, "--max-latency", help="Only mappings of at most this many "
                                              "cycles."),
    max_energy: Optional[int] = typer.Option(None, "--max-energy", help="Only mappings of at most this many fJ."),
    cpsat_workers: int = typer.Option(1, "--cpsat-workers", help="CP-SAT's threads per segment solve."),
    seed: Optional[int] = typer.Option(None, "--seed", help="CP-SAT random seed."),
    nesting: Optional[str] = typer.Option(None, "--nesting", help="tree or flat (default: the instance's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """The exact energy-latency Pareto front: every point a mapping proven non-dominated (when the front is
    complete, every non-dominated mapping's figures)."""
    check_run_options(time_limit, deterministic_time, seed)
    if points is not None and not 1 <= points <= 10**6:
        fail(f"--points must be between 1 and 10^6, not {points}")
    if not 1 <= cpsat_workers <= 64:
        fail(f"--cpsat-workers must be between 1 and 64, not {cpsat_workers}")
    caps = check_caps(max_latency, max_energy)
    check_output_path("--json", json_out)
    check_output_path("--plot", plot)
    inst = with_nesting(load_instance_or_fail(instance, time_limit), nesting)
    from mapsolve.solver import SolverError, VerificationError
    from mapsolve.solver.pareto import pareto_front
    from mapsolve.solver.search import Control
    from .solve_cmd import Progress, _on_ctrl_c, checkpoint
    progress = Progress(quiet)
    control = Control()
    restore = _on_ctrl_c(control.interrupt)
    try:
        checkpoint("pareto")   # testing hook: an interrupt before the first segment
        front = pareto_front(inst, time_limit, deterministic_time, caps, points, cpsat_workers, seed, control,
                             progress)
    except VerificationError as exc:
        fail(f"internal inconsistency (please report): {exc}", EXIT_BUG)
    except SolverError as exc:
        fail(str(exc), EXIT_INPUT)
    finally:
        progress.done()
    try:
        shown = select(front.points, points)
        if json_out is not None:
            write_atomically(json_out, json.dumps(front_json(inst, front, shown), indent=1) + "\n")
        if plot is not None and front.points:
            try:
                plot_front(front, shown, plot, inst.name)
            except ImportError:
                fail("--plot needs matplotlib: pip install '.[plot]'")
        _print_front(front, shown, inst.architecture.frequency_mhz)
    finally:
        restore()
    if control.interrupted:
        fail("interrupted: the points above were found before the interrupt; the front is not complete",
             EXIT_INTERRUPTED)
    if not front.points:
        fail("no mapping found" + (" within the caps" if caps else " within the time limit"),
             EXIT_NO_SOLUTION if not (front.complete and caps) else 3)


def _print_front(front, shown, frequency_mhz) -> None:
    """The points in engineering units, and exactly: neighbours on a front often differ past 4 digits."""
    from .report import duration, energy
    typer.echo(f"{'energy':>10} {'latency':>16} {'energy (fJ)':>22} {'latency (cycles)':>18}  proven  fused groups")
    for p in shown:
        typer.echo(f"{energy(p.energy_fj):>10} {duration(p.latency_cycles, frequency_mhz):>16} {p.energy_fj:>22,} "
                   f"{p.latency_cycles:>18,}  {'yes' if p.proven else 'no':>6}  {', '.join(p.groups) or '-'}")
    what = "complete: every non-dominated mapping's figures are listed" if front.complete and len(shown) == \
        len(front.points) else ("complete" if front.complete else "not complete")
    if len(shown) < len(front.points):
        what += f"; {len(shown)} of {len(front.points)} points shown"
    gap = front.largest_gap()
    if gap:
        what += (f"; largest gap between neighbours: latency x{gap['latency_ratio']:.3g}, energy "
                 f"x{gap['energy_ratio']:.3g}")
    if front.unfinished:
        what += f"; {len(front.unfinished)} segment fronts unfinished (e.g. {front.unfinished[0]})"
    typer.echo(f"front    {what}")
    typer.echo(f"time     {front.seconds:.2f} s, {len(front.segments)} segment solves, {front.pruned} segments pruned "
               f"(could not add a point)")


def verify_front(inst, time_limit, deterministic_time, max_candidates: int, brute_max: int) -> None:
    """`verify --pareto`: the solver's front == the enumerators' (exit 0), else exit 1 (the last line says)."""
    from mapsolve.solver import SolverError, VerificationError
    from mapsolve.solver.enum_front import enumerate_front
    from mapsolve.solver.enumerate import EnumerationError, MapspaceTooLarge, estimate
    from mapsolve.solver.pareto import pareto_front
    work = estimate(inst, True, max_candidates)
    if work > max_candidates:
        fail(str(MapspaceTooLarge(work, max_candidates)))
    try:
        front = pareto_front(inst, time_limit, deterministic_time, seed=0)
    except VerificationError as exc:
        fail(f"internal inconsistency (please report): {exc}", EXIT_BUG)
    except SolverError as exc:
        fail(str(exc), EXIT_INPUT)
    mine = [(p.energy_fj, p.latency_cycles) for p in front.points]
    typer.echo(f"{'CP-SAT':<12} {len(mine)} points, {'complete' if front.complete else 'not complete'}: {mine}")
    runs = []
    for name, prune, limit in (("enumerator", True, max_candidates), ("brute force", False, brute_max)):
        if not prune and estimate(inst, False, brute_max) > brute_max:
            typer.echo(f"{name:<12} skipped: estimated work above --brute-max {brute_max:,}")
            continue
        try:
            pts = [(e, l) for e, l, _ in enumerate_front(inst, prune=prune, max_candidates=limit)]
        except EnumerationError as exc:
            if "infeasible" not in str(exc):
                fail(str(exc))
            pts = []
        runs.append(pts)
        typer.echo(f"{name:<12} {len(pts)} points: {pts}")
    if any(r != runs[0] for r in runs):
        typer.echo("DISAGREEMENT: the enumerators' fronts differ")
        raise typer.Exit(EXIT_MISMATCH)
    if mine == runs[0] and front.complete:
        typer.echo(f"verified: the fronts are equal ({len(mine)} points)")
        return
    found_dominated = all(any(a <= e and b <= l for a, b in runs[0]) for e, l in mine)
    lower_ok = all(any(a * front.energy_unit_fj <= e and b <= l for a, b in front.lower) for e, l in runs[0])
    if not front.complete and found_dominated and lower_ok:
        typer.echo("NOT VERIFIED (inconclusive, raise --time-limit): the solver's front is not complete; what it "
                   "found and its lower front are consistent with the enumerator's")
    else:
        typer.echo(f"DISAGREEMENT: the solver's front {mine} (complete: {front.complete}) differs from the "
                   f"enumerator's {runs[0]}")
    raise typer.Exit(EXIT_MISMATCH)
