"""`mapsolve solve INSTANCE` (also plain `mapsolve INSTANCE`): find, prove, decode, verify, report."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from mapsolve.model import InputError, load_instance

from .app import EXIT_BUG, EXIT_INFEASIBLE, EXIT_INPUT, EXIT_NO_SOLUTION, app, fail
from .report import print_result


class Progress:
    """One status line on stderr, rewritten in place on a terminal, one line per segment otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()

    def __call__(self, message: str, transient: bool = False) -> None:
        """`transient` lines (each new incumbent) only show on a terminal, where they overwrite each other."""
        if self.quiet or (transient and not self.tty):
            return
        line = f"[{time.perf_counter() - self.t0:7.2f}s] {message}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if not self.quiet and self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def result_json(res, inst) -> dict:
    """The `--json OUT` document: the keys users and checks rely on first, then detail."""
    doc = {
        "status": res.status,
        "objective": res.objective,
        "best_bound": res.best_bound,
        "gap": res.gap,
        "objective_name": res.objective_name,
        "energy_fj": res.energy_fj,
        "latency_cycles": res.latency_cycles,
        "mapping": res.mapping.model_dump(mode="json") if res.mapping else None,
        "solve_seconds": round(res.build_seconds + res.solve_seconds, 4),
        "build_seconds": round(res.build_seconds, 4),
        "search_seconds": round(res.solve_seconds, 4),
        "instance": inst.name,
        "diagnosis": res.diagnosis or None,
        "segments": [{"einsums": list(s.names), "fusion_level": s.fusion, "status": s.status,
                      "values": list(s.values) if s.values else None, "bound": list(s.bound),
                      "seconds": round(s.seconds, 4), "build_seconds": round(s.build_seconds, 4),
                      "model_size": s.model_size} for s in res.segments],
    }
    if res.evaluation is not None:
        doc["breakdown"] = res.evaluation.to_json()["breakdown"]
    return doc


@app.command("solve")
def solve_command(
    instance: Path = typer.Argument(..., help="Instance JSON file."),
    objective: Optional[str] = typer.Option(None, "--objective", "-o",
                                            help="energy, latency, energy,latency or latency,energy "
                                                 "(default: the instance's solver.objective)."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", "-t", help="Seconds for the whole search."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="CP-SAT workers (1 is deterministic)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="CP-SAT random seed."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line and no summary."),
) -> None:
    """Find a mapping of minimal energy or latency and prove it optimal."""
    try:
        inst = load_instance(instance)
    except InputError as exc:
        fail(str(exc))
    if time_limit is not None and time_limit <= 0:
        fail("--time-limit must be positive")
    if workers is not None and workers < 1:
        fail("--workers must be at least 1")
    from mapsolve.solver import SolverError, VerificationError, solve as run_solver  # ortools loads slowly

    progress = Progress(quiet)
    try:
        res = run_solver(inst, objective, time_limit, workers, seed, progress=progress)
    except VerificationError as exc:
        progress.done()
        fail(f"internal inconsistency (please report): {exc}", EXIT_BUG)
    except SolverError as exc:
        progress.done()
        fail(str(exc), EXIT_INPUT)
    progress.done()
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(result_json(res, inst), indent=1) + "\n")
        except OSError as exc:
            fail(f"--json {json_out}: cannot write: {exc}")
    if res.status == "INFEASIBLE":
        fail(f"infeasible: {res.diagnosis}", EXIT_INFEASIBLE)
    if res.mapping is None:
        fail(f"no mapping found within the time limit ({res.diagnosis}); best bound {res.best_bound}",
             EXIT_NO_SOLUTION)
    if quiet:
        return
    gap = f", gap {100 * res.gap:.3g}%" if res.gap else ""
    typer.echo(f"status   {res.status} ({res.objective_name}: {res.objective}, bound {res.best_bound}{gap})")
    typer.echo(f"time     {res.build_seconds + res.solve_seconds:.2f} s (model building {res.build_seconds:.2f} s, "
               f"search {res.solve_seconds:.2f} s, {len(res.segments)} segment models)")
    print_result(inst, res.mapping, res.evaluation)
