"""`mapsolve enumerate INSTANCE` and `mapsolve verify INSTANCE`: the exhaustive reference enumerator, alone or
against the CP-SAT solver (exit 0 iff CP-SAT proved an optimum every enumerator equals; 1 otherwise, with both
mappings written out: a disagreement, or CP-SAT out of time before its proof, said apart in the last line)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from .app import (check_output_path, check_run_options, write_atomically, with_nesting, EXIT_BUG, EXIT_INFEASIBLE,
                  EXIT_INPUT, EXIT_MISMATCH, EXIT_NO_SOLUTION, app, fail,
                  load_instance_or_fail)

DEFAULT_MAX = 50_000_000


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
    return (f"{name:<12} optimum {', '.join(map(str, r.objective))} (energy {r.energy_fj} fJ, latency "
            f"{r.latency_cycles} cycles)  "
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
    check_run_options(objective=objective)
    check_output_path("--json", json_out)
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
        text = json.dumps(doc, indent=1) + "\n"
        try:
            write_atomically(json_out, text)
        except OSError as exc:   # print it instead of losing it
            typer.echo(text, nl=False)
            fail(f"--json {json_out}: cannot write: {exc.strerror or exc} (the JSON result is printed above instead)")


@app.command("verify")
def verify_command(
    instance: Path = typer.Argument(..., help="Instance JSON file."),
    objective: Optional[str] = typer.Option(None, "--objective", "-o", help="energy, latency, energy,latency or "
                                            "latency,energy (default: the instance's solver.objective)."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", "-t", help="Seconds for the CP-SAT search."),
    deterministic_time: Optional[float] = typer.Option(None, "--deterministic-time", help="CP-SAT deterministic "
                                                       "seconds for the search (load-independent)."),
    max_candidates: int = typer.Option(DEFAULT_MAX, "--max-candidates", help="Refuse when the pruned "
                                       "enumerator's estimated work exceeds this many candidates."),
    brute_max: int = typer.Option(20_000_000, "--brute-max", help="Also run plain brute force when its estimated "
                                  "work is at most this."),
    out_dir: Path = typer.Option(Path("."), "--out-dir", help="Where to write both mappings on a disagreement."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    trace: Optional[Path] = typer.Option(None, "--trace", help="Trace the CP-SAT search (docs/traces.md); the "
                                         "enumerators' optima are added to its final record."),
    nesting: Optional[str] = typer.Option(None, "--nesting", help="tree: shared loops may enclose any run of a "
                                          "fused group (nested fusion); flat: every shared loop encloses the whole "
                                          "group (default: the instance's solver.nesting)."),
    pareto: bool = typer.Option(False, "--pareto", help="Compare the energy-latency fronts instead: the solver's "
                                "(`mapsolve pareto`) and the enumerator's (pruned, and brute force when small "
                                "enough), point for point."),
) -> None:
    """Prove the solver right on a small instance: CP-SAT optimum == exhaustive enumeration (exit 0), else exit 1."""
    check_run_options(time_limit, deterministic_time, objective=objective)
    check_output_path("--trace", trace)
    if not out_dir.is_dir():
        fail(f"--out-dir {out_dir}: not a folder")
    inst = load_instance_or_fail(instance, time_limit)
    inst = with_nesting(inst, nesting)
    from mapsolve.solver import SolverError, VerificationError, solve
    from mapsolve.solver.enumerate import MapspaceTooLarge, estimate
    from .tracing import SearchOutputs
    objective = objective or inst.solver.objective
    work = estimate(inst, True, max_candidates)
    if work > max_candidates:  # refuse before the CP-SAT run, not after it
        fail(str(MapspaceTooLarge(work, max_candidates)))
    if pareto:
        from .pareto_cmd import verify_front
        verify_front(inst, time_limit, deterministic_time, max_candidates, brute_max)
        return
    outputs = SearchOutputs(instance, inst, trace, None, None,
                            {"objective": objective, "time_limit": time_limit, "deterministic_time": deterministic_time,
                             "workers": 1, "seed": 0, "command": "verify"})
    if outputs.failures:
        fail(outputs.failure_line())
    try:
        res = solve(inst, objective, time_limit, 1, 0, events=outputs.event, deterministic_time=deterministic_time)
    except VerificationError as exc:
        outputs.close(None)
        fail(f"internal inconsistency (please report): {exc}", EXIT_BUG)
    except SolverError as exc:
        outputs.close(None)
        fail(str(exc), EXIT_INPUT)
    if res.mapping is None:
        fail(f"CP-SAT found no mapping ({res.status}: {res.diagnosis or 'no incumbent within the time limit'})",
             EXIT_INFEASIBLE if res.status == "INFEASIBLE" else EXIT_NO_SOLUTION)
    if res.energy_unit_fj != 1 and "energy" in objective:
        fail(f"cannot verify exactly: the instance is too large for exact femtojoules and CP-SAT priced energy in "
             f"units of {res.energy_unit_fj} fJ (verify is for small instances)")
    cp_seconds = res.build_seconds + res.solve_seconds
    label = "optimum" if res.status == "OPTIMAL" else "best"
    typer.echo(f"{'CP-SAT':<12} {label} {', '.join(map(str, res.objective))} (energy {res.energy_fj} fJ, latency {res.latency_cycles} "
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
    verdict, why = judge(res, [r for _, r in runs])
    if verdict == "verified":
        typer.echo("verified: all optima are equal")
        if outputs.failures:   # the verdict stands; the trace asked for is incomplete
            fail(outputs.failure_line())
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(instance).stem
    paths = [out_dir / f"{stem}.cpsat.mapping.json", out_dir / f"{stem}.enumerator.mapping.json"]
    try:
        paths[0].write_text(json.dumps(res.mapping.model_dump(mode="json"), indent=1) + "\n")
        paths[1].write_text(json.dumps(runs[0][1].mapping.model_dump(mode="json"), indent=1) + "\n")
    except OSError as exc:
        fail(f"DISAGREEMENT ({why}), and the mappings cannot be written: {exc}", EXIT_MISMATCH)
    if verdict == "unproven":
        typer.echo(f"NOT VERIFIED (inconclusive, raise --time-limit): {why}; mappings written to {paths[0]} and "
                   f"{paths[1]}")
    else:
        typer.echo(f"DISAGREEMENT: {why}; mappings written to {paths[0]} and {paths[1]}")
    raise typer.Exit(EXIT_MISMATCH)


def judge(res, enumerated) -> tuple[str, str]:
    """`verified` (CP-SAT proved an optimum every enumerator equals), `unproven` (CP-SAT stopped before its
    proof but nothing it claims contradicts the enumerators: incumbent >= optimum >= bound), or `disagree`."""
    optima = {tuple(r.objective) for r in enumerated}
    if len(optima) > 1:
        return "disagree", f"the enumerators disagree among themselves: {sorted(optima)}"
    (opt,) = optima
    value = tuple(res.objective)
    if res.status == "OPTIMAL":
        if value == opt:
            return "verified", ""
        return "disagree", f"CP-SAT claims OPTIMAL {list(value)}, the enumerator's optimum is {list(opt)}"
    if value < opt:
        return "disagree", f"CP-SAT's mapping {list(value)} beats the enumerator's optimum {list(opt)}"
    if res.best_bound and res.best_bound[0] > opt[0]:
        return "disagree", (f"CP-SAT's bound {res.best_bound[0]} exceeds the enumerator's optimum {opt[0]}: "
                            f"the bound is wrong")
    gap = "equals" if value == opt else "is above"
    return "unproven", (f"CP-SAT stopped at {res.status} before proving optimality; its incumbent {list(value)} "
                        f"{gap} the enumerator's optimum {list(opt)}, its bound {res.best_bound} is consistent")
