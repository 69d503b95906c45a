"""`mapsolve enumerate INSTANCE` and `mapsolve verify INSTANCE`: the exhaustive reference enumerator, alone or
against the CP-SAT solver (exit 0 iff every optimum is equal, 1 otherwise with both mappings written out)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer


from .app import EXIT_BUG, EXIT_INPUT, EXIT_MISMATCH, app, fail, load_instance_or_fail

DEFAULT_MAX = 20_000_000


class Bar:
    """A progress bar on stderr (rewritten in place on a terminal, a few lines otherwise)."""

    def __init__(self, label: str, quiet: bool = False):
        self.label, self.quiet, self.tty = label, quiet, sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if self.quiet or total <= 0:
            return
        pct = int(100 * done / total)
        if pct == self.last or (not self.tty and pct % 25):
            return
        self.last = pct
        bar = "#" * (pct // 4) + "." * (25 - pct // 4)
        line = f"{self.label} [{bar}] {pct:3d}% {time.perf_counter() - self.t0:6.1f}s"
        sys.stderr.write(("\r\033[K" + line) if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if not self.quiet and self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _enumerate(inst, objective, prune, max_candidates, quiet, label):
    from mapsolve.solver.enumerate import EnumerationError, MapspaceTooLarge, enumerate_optimum
    bar = Bar(label, quiet)
    try:
        return enumerate_optimum(inst, objective, prune=prune, max_candidates=max_candidates, progress=bar)
    except MapspaceTooLarge as exc:
        bar.done()
        fail(str(exc), EXIT_INPUT)
    except EnumerationError as exc:
        bar.done()
        fail(str(exc), EXIT_BUG if "internal" in str(exc) else EXIT_INPUT)
    finally:
        bar.done()


def _line(name: str, r) -> str:
    return (f"{name:<12} optimum {r.objective} (energy {r.energy_fj} fJ, latency {r.latency_cycles} cycles)  "
            f"candidates {r.candidates:,} evaluated {r.evaluated:,} kept {r.kept:,}  {r.seconds:.2f} s")


@app.command("enumerate")
def enumerate_command(
    instance: Path = typer.Argument(..., help="Instance JSON file."),
    objective: Optional[str] = typer.Option(None, "--objective", "-o", help="energy, latency, energy,latency or "
                                            "latency,energy (default: the instance's solver.objective)."),
    no_prune: bool = typer.Option(False, "--no-prune", help="Plain brute force (no Pareto pruning, every order)."),
    max_candidates: int = typer.Option(DEFAULT_MAX, "--max-candidates", help="Refuse when the estimated work "
                                       "exceeds this many candidates."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Exhaustive optimum over the solver's mapspace (small instances only)."""
    inst = load_instance_or_fail(instance)
    if max_candidates < 1:
        fail("--max-candidates must be at least 1")
    r = _enumerate(inst, objective, not no_prune, max_candidates, quiet, "enumerate")
    typer.echo(_line("enumerator" if not no_prune else "brute force", r))
    if json_out is not None:
        doc = {"objective": r.objective, "objective_name": r.objective_name, "energy_fj": r.energy_fj,
               "latency_cycles": r.latency_cycles, "pruned": r.pruned, "candidates": r.candidates,
               "evaluated": r.evaluated, "kept": r.kept, "estimate": r.estimate, "seconds": round(r.seconds, 4),
               "instance": inst.name, "mapping": r.mapping.model_dump(mode="json")}
        try:
            json_out.write_text(json.dumps(doc, indent=1) + "\n")
        except OSError as exc:
            fail(f"--json {json_out}: cannot write: {exc}")


@app.command("verify")
def verify_command(
    instance: Path = typer.Argument(..., help="Instance JSON file."),
    objective: Optional[str] = typer.Option(None, "--objective", "-o", help="energy, latency, energy,latency or "
                                            "latency,energy (default: the instance's solver.objective)."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", "-t", help="Seconds for the CP-SAT search."),
    max_candidates: int = typer.Option(DEFAULT_MAX, "--max-candidates", help="Refuse when the pruned "
                                       "enumerator's estimated work exceeds this many candidates."),
    brute_max: int = typer.Option(2_000_000, "--brute-max", help="Also run plain brute force when its estimated "
                                  "work is at most this."),
    out_dir: Path = typer.Option(Path("."), "--out-dir", help="Where to write both mappings on a disagreement."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    trace: Optional[Path] = typer.Option(None, "--trace", help="Trace the CP-SAT search (docs/traces.md); the "
                                         "enumerators' optima are added to its final record."),
) -> None:
    """Prove the solver right on a small instance: CP-SAT optimum == exhaustive enumeration (exit 0), else exit 1."""
    inst = load_instance_or_fail(instance, time_limit)
    from mapsolve.solver import SolverError, VerificationError, solve
    from mapsolve.solver.enumerate import estimate
    from .tracing import SearchOutputs
    objective = objective or inst.solver.objective
    try:
        outputs = SearchOutputs(instance, inst, trace, None, None,
                                {"objective": objective, "time_limit": time_limit, "workers": 1, "seed": 0,
                                 "command": "verify"})
    except OSError as exc:
        fail(f"cannot write output: {exc}")
    try:
        res = solve(inst, objective, time_limit, 1, 0, events=outputs.event)
    except VerificationError as exc:
        outputs.close(None)
        fail(f"internal inconsistency (please report): {exc}", EXIT_BUG)
    except SolverError as exc:
        outputs.close(None)
        fail(str(exc), EXIT_INPUT)
    if res.mapping is None:
        fail(f"CP-SAT found no mapping ({res.status}: {res.diagnosis})", EXIT_INPUT)
    cp_seconds = res.build_seconds + res.solve_seconds
    typer.echo(f"{'CP-SAT':<12} optimum {res.objective} (energy {res.energy_fj} fJ, latency {res.latency_cycles} "
               f"cycles)  status {res.status}  {cp_seconds:.2f} s")
    runs = [("enumerator", _enumerate(inst, objective, True, max_candidates, quiet, "enumerate (pruned)"))]
    typer.echo(_line(*runs[0]))
    if estimate(inst, False, brute_max) <= brute_max:
        runs.append(("brute force", _enumerate(inst, objective, False, brute_max, quiet, "brute force")))
        typer.echo(_line(*runs[-1]))
    else:
        typer.echo(f"{'brute force':<12} skipped: estimated work above --brute-max {brute_max:,}")
    outputs.close(res, {"verify": {name: {"objective": r.objective, "seconds": r.seconds, "kept": r.kept,
                                          "evaluated": r.evaluated} for name, r in runs}})
    if res.status != "OPTIMAL":
        typer.echo(f"warning: CP-SAT did not prove optimality ({res.status}); raise --time-limit")
    if all(r.objective == res.objective for _, r in runs) and res.status == "OPTIMAL":
        typer.echo("verified: all optima are equal")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(instance).stem
    paths = [out_dir / f"{stem}.cpsat.mapping.json", out_dir / f"{stem}.enumerator.mapping.json"]
    paths[0].write_text(json.dumps(res.mapping.model_dump(mode="json"), indent=1) + "\n")
    paths[1].write_text(json.dumps(runs[0][1].mapping.model_dump(mode="json"), indent=1) + "\n")
    typer.echo(f"DISAGREEMENT: mappings written to {paths[0]} and {paths[1]}")
    raise typer.Exit(EXIT_MISMATCH)
