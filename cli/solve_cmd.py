"""`mapsolve solve INSTANCE` (also plain `mapsolve INSTANCE`): find, prove, decode, verify, report."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import typer

from .app import (EXIT_BUG, EXIT_INFEASIBLE, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_NO_SOLUTION, app,
                  check_output_path, check_run_options, fail, load_instance_or_fail, with_nesting, write_atomically)
from .report import duration, energy, print_result


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


INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _on_ctrl_c(callback):
    """Call `callback` on SIGINT or SIGTERM even while the main thread is inside CP-SAT's C++ search.

    Python runs signal handlers only between bytecodes of the main thread, which is blocked in the solver; the
    wakeup fd is written by the C-level handler at once, and a watcher thread turns it into `callback()`
    (CpSolver.stop_search is thread-safe). Returns a function restoring the previous state. Installed before the
    search and restored only after every output is written, so an interrupt never cuts a file short.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = {sig: signal.signal(sig, lambda *_: callback()) for sig in INTERRUPT_SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_fd)

    def watch() -> None:
        try:
            while os.read(read_fd, 1):
                callback()
        except OSError:
            pass
    threading.Thread(target=watch, daemon=True).start()

    def restore() -> None:
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(write_fd)

    return restore


def checkpoint(phase: str) -> None:
    """Testing hook: MAPSOLVE_INTERRUPT_AT=PHASE[:N] sends this process SIGINT the N-th time (default 1st) it
    reaches PHASE, so tests can interrupt at every phase deterministically (tests/test_traces.py)."""
    want = os.environ.get("MAPSOLVE_INTERRUPT_AT")
    if not want:
        return
    name, _, nth = want.partition(":")
    if name != phase:
        return
    seen = checkpoint.counts.get(phase, 0) + 1
    checkpoint.counts[phase] = seen
    if seen == int(nth or 1):
        os.kill(os.getpid(), signal.SIGINT)


checkpoint.counts = {}


def variants_line(res, frequency_mhz=None) -> str:
    """Which cascade won, and each other variant's own result (proven optimum, or best and bound)."""
    parts = []
    for v in res.variants:
        if v["variant"] == res.variant:
            continue
        if v["objective"] is None:
            parts.append(f"{v['variant']} {v['status']}")
        else:
            show = lambda values: _values(res.objective_name, values, res.energy_unit_fj, frequency_mhz)  # noqa: E731
            parts.append(f"{v['variant']} {v['status']} {show(v['objective'])}" +
                         ("" if v["status"] == "OPTIMAL" else f" (bound {show(v['best_bound'])})"))
    return f"variant  {res.variant} won; others: {'; '.join(parts) or '-'}"


@app.command("solve")
def solve_command(
    instance: Path = typer.Argument(..., help="Instance JSON file."),
    objective: Optional[str] = typer.Option(None, "--objective", "-o",
                                            help="energy, latency, energy,latency or latency,energy "
                                                 "(default: the instance's solver.objective)."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", "-t", help="Seconds for the whole search."),
    deterministic_time: Optional[float] = typer.Option(
        None, "--deterministic-time", help="CP-SAT deterministic seconds for the whole search (summed over "
        "segments): the same answer on a fast or a loaded machine. The wall-clock limit then applies only if "
        "--time-limit is given too."),
    certify: str = typer.Option("auto", "--certify", help="Check the proven bound against valid mappings built "
                                "without the proof: auto (the constructive mapping; batch replication on instances "
                                "with an Einsum of >= 2^31 operations), full (replication whenever a batch rank "
                                "exists), cheap (constructive only). A bound above one exits 5."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Processes solving segments at once "
                                          "(default: the instance's solver.workers if set, else this machine's "
                                          "CPUs). The answer does not depend on it (solver/parallel.py)."),
    cpsat_workers: int = typer.Option(1, "--cpsat-workers", help="CP-SAT's own threads per segment search "
                                      "(its portfolio; 1 is deterministic, more is not)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="CP-SAT random seed."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line and no summary."),
    trace: Optional[Path] = typer.Option(None, "--trace", help="Write a trace of the search (JSON Lines, or "
                                         "CSV if the name ends in .csv); see docs/traces.md."),
    solver_log: Optional[Path] = typer.Option(None, "--solver-log", help="Write CP-SAT's full search log."),
    export_model: Optional[Path] = typer.Option(None, "--export-model", help="Write every segment's CP-SAT "
                                                "model (text proto, replayable) as FILE.NNN-segment.pb.txt."),
    nesting: Optional[str] = typer.Option(None, "--nesting", help="tree: shared loops may enclose any run of a "
                                          "fused group (nested fusion); flat: every shared loop encloses the whole "
                                          "group (default: the instance's solver.nesting)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Keep proven segment results in this folder and "
                                         "reuse them (keyed by the segment's content and the code's version): "
                                         "re-solving an unchanged instance, or a similar one, costs little."),
    max_latency: Optional[int] = typer.Option(None, "--max-latency", help="Only mappings of at most this many "
                                              "cycles (a proven cap: the optimum is read off the exact "
                                              "energy-latency front, `mapsolve pareto`)."),
    max_energy: Optional[int] = typer.Option(None, "--max-energy", help="Only mappings of at most this many fJ "
                                             "(a proven cap, as --max-latency)."),
) -> None:
    """Find a mapping of minimal energy, latency or energy x latency (edp) and prove it optimal."""
    checkpoint("load")   # before the search's handler: Ctrl-C here is KeyboardInterrupt, exit 130 (cli/main.py)
    check_run_options(time_limit, deterministic_time, seed, workers, objective)
    from .pareto_cmd import check_caps
    caps = check_caps(max_latency, max_energy)
    if not 1 <= cpsat_workers <= 64:
        fail(f"--cpsat-workers must be between 1 and 64, not {cpsat_workers}")
    for flag, path in (("--json", json_out), ("--trace", trace), ("--solver-log", solver_log)):
        check_output_path(flag, path)
    check_output_path("--export-model", export_model, prefix=True)
    inst = load_instance_or_fail(instance, time_limit)
    inst = with_nesting(inst, nesting)
    if workers is None:
        from mapsolve.solver.parallel import default_workers
        workers = inst.solver.workers if "workers" in inst.solver.model_fields_set else min(default_workers(), 64)
    if certify not in ("auto", "full", "cheap"):
        fail(f"--certify must be auto, full or cheap, not {certify!r}")
    from mapsolve.solver import SolverError, VerificationError, solve as run_solver  # ortools loads slowly
    from mapsolve.solver.cache import SegmentCache
    from mapsolve.solver.search import Control
    try:   # in memory without --cache: variants and segments equal but for names still share proofs
        segment_cache = SegmentCache(cache)
    except OSError as exc:
        fail(f"--cache {cache}: cannot use this folder: {exc}")

    from .tracing import SearchOutputs

    progress = Progress(quiet)
    control = Control()
    restore = _on_ctrl_c(control.interrupt)
    try:
        outputs = SearchOutputs(instance, inst, trace, solver_log, export_model,
                                {"objective": objective or inst.solver.objective, "time_limit": time_limit,
                                 "deterministic_time": deterministic_time, "certify": certify,
                                 "workers": workers, "cpsat_workers": cpsat_workers, "seed": seed})
        if outputs.failures:   # nothing searched yet, so nothing is lost
            fail(outputs.failure_line())
        _solve_and_report(inst, objective, time_limit, workers, seed, progress, outputs, control, deterministic_time,
                          certify, json_out, quiet, run_solver, SolverError, VerificationError, segment_cache,
                          cpsat_workers, models_wanted=solver_log is not None or export_model is not None,
                          caps=caps, instance_path=instance)
        checkpoint("done")
        if control.interrupted:   # it came while the finished result was being written or printed
            fail(f"interrupted: the result above is complete{f' and written to {json_out}' if json_out else ''}",
                 EXIT_INTERRUPTED)
    finally:
        restore()


def _solve_and_report(inst, objective, time_limit, workers, seed, progress, outputs, control, deterministic_time,
                      certify, json_out, quiet, run_solver, SolverError, VerificationError, cache, cpsat_workers=1,
                      models_wanted=False, caps=None, instance_path=None) -> None:
    """The search, then every output; an interrupt at any moment (control.interrupted) ends in exit 130 once
    everything is written."""
    def event(record: dict) -> None:
        outputs.event(record)
        checkpoint(record.get("type", ""))
    checkpoint("search")
    try:
        # a CP-SAT log or exported models need every model in this process (one process then: solver/parallel.py)
        res = run_solver(inst, objective, time_limit, workers, seed, progress=progress,
                         log=outputs.log if models_wanted else None, events=event, control=control,
                         on_model=outputs.model if models_wanted else None, deterministic_time=deterministic_time,
                         certify=certify, cache=cache, cpsat_workers=cpsat_workers, caps=caps)
    except VerificationError as exc:
        progress.done()
        outputs.close(None)
        fail(f"internal inconsistency (please report): {exc}", EXIT_BUG)
    except SolverError as exc:
        progress.done()
        outputs.close(None)
        fail(str(exc), EXIT_INPUT)
    progress.done()
    checkpoint("close_trace")
    outputs.close(res)
    from mapsolve.solver.baseline import compare
    from mapsolve.solver.document import result_json
    baselines = compare(inst, res, instance_path)   # read off the segments already solved: no further search
    if json_out is not None:
        checkpoint("write_json")
        doc = json.dumps(result_json(res, inst, {k: b for k, (b, _) in baselines.items()}), indent=1) + "\n"
        try:
            write_atomically(json_out, doc)
        except OSError as exc:   # print it instead of losing it; the error line comes after the report
            typer.echo(doc, nl=False)
            outputs.failures["--json"] = f"{json_out}: cannot write: {exc.strerror or exc} (the JSON result is " \
                                         f"printed above instead)"
    checkpoint("report")
    lost = outputs.failure_line()
    also = f"; also {lost}" if lost else ""
    if res.status == "INTERRUPTED" or control.interrupted:
        if not quiet and res.mapping is not None:
            print_result(inst, res.mapping, res.evaluation, baselines=_against(baselines))
        fail(f"interrupted: {res.status}, best {_values(res.objective_name, res.objective, res.energy_unit_fj)}, "
             f"bound {_values(res.objective_name, res.best_bound, res.energy_unit_fj)}, gap "
             f"{'-' if res.gap is None else f'{100 * res.gap:.3g}%'}"
             f"{f'; result written to {json_out}' if json_out and '--json' not in outputs.failures else ''}{also}",
             EXIT_INTERRUPTED)
    if res.status == "INFEASIBLE":
        fail(f"infeasible: {res.diagnosis}{also}", EXIT_INFEASIBLE)
    if res.mapping is None:
        why = res.diagnosis if res.diagnosis and "no mapping found" not in res.diagnosis else ""
        fail(f"no mapping found within the time limit{f' ({why})' if why else ''}; best bound "
             f"{_values(res.objective_name, res.best_bound, res.energy_unit_fj)}{also}", EXIT_NO_SOLUTION)
    if not quiet:
        _print_summary(inst, res, cache, baselines)
    if lost:   # the result is complete above; an output the user asked for is not
        fail(lost)


def _values(names: str, values, energy_unit: int = 1, frequency_mhz=None) -> str:
    """`energy 22.36 nJ, latency 128 cycles` for an objective's values in engineering units (or `-` when there are
    none); the exact integers are in `--json`. In a coarser energy unit, the value times the unit."""
    if not values:
        return "-"
    show = {"energy": lambda v: energy(v) if energy_unit == 1 else
            f"{energy(v * energy_unit)} (rounded-down prices: {v:,} x {energy_unit} fJ)", "latency": lambda v: duration(v, frequency_mhz),
            "edp": lambda v: f"{v:.4g} fJ x cycles"}
    names = names.split(" with ")[0]   # "energy with latency <= C": the cap is said elsewhere
    return ", ".join(f"{n} {show[n](v) if n in show else v}" for n, v in zip(names.split(","), values))


def _against(baselines: dict) -> list:
    """(label, baseline, why not) lines for the report."""
    unfused, why = baselines["unfused"]
    proven = "proven" if unfused is not None and unfused.proven else "best found"
    out = [(f"best unfused mapping (every Einsum alone, {proven})", unfused, why)]
    shipped, why = baselines["shipped"]
    out.append((f"shipped mapping {shipped.source if shipped else ''}".rstrip(), shipped, why))
    return out


def _print_summary(inst, res, cache, baselines) -> None:
    gap = f", gap {100 * res.gap:.3g}%" if res.gap else ""
    freq = inst.architecture.frequency_mhz
    typer.echo(f"status   {res.status} ({_values(res.objective_name, res.objective, res.energy_unit_fj, freq)}; "
               f"bound {_values(res.objective_name, res.best_bound, res.energy_unit_fj, freq)}{gap})")
    if res.energy_unit_fj > 1:
        typer.echo(f"note     exact fJ would overflow CP-SAT's 64-bit integers: energy was optimised in units of "
                   f"{res.energy_unit_fj} fJ, every per-access and per-op energy rounded down, so the bound times "
                   f"{res.energy_unit_fj} is a proven lower bound in fJ ({energy(res.energy_bound_fj)}) and the status is "
                   f"OPTIMAL only if the exact energy meets it. This mapping's rounding: "
                   f"{energy(res.rounding_error_fj)}. "
                   f"The energy below is exact.")
    if res.diagnosis and res.status != "OPTIMAL":   # e.g. segments CP-SAT cannot represent, plans not reached
        typer.echo(f"note     {res.diagnosis}")
    if res.incumbent_source and res.incumbent_source != "cp-sat":
        typer.echo(f"from     {res.incumbent_source} (the constructive mapping is the first incumbent; CP-SAT "
                   f"replaces each piece it beats)")
    if res.variants:
        typer.echo(variants_line(res, inst.architecture.frequency_mhz))
    for c in res.certificates:
        of = f"variant {c['variant']}'s " if "variant" in c else ""
        first = res.objective_name.split(",")[0].split(" with ")[0]
        v = c["values"][0]
        cost = energy(v * res.energy_unit_fj) if first == "energy" else \
            duration(v, inst.architecture.frequency_mhz) if first == "latency" else f"{v:,}"
        typer.echo(f"checked  {of}bound <= {cost}, the cost of a valid mapping built without the proof "
                   f"({c['label']})")
    hits = sum(1 for s in res.segments if s.source == "cache")
    if hits:
        typer.echo(f"cache    {hits} of {len(res.segments)} segment results reused from {cache.folder or 'memory'}")
    if cache.error:
        typer.echo(f"warning  {cache.error}")
    total = res.construct_seconds + res.build_seconds + res.solve_seconds + res.certify_seconds
    typer.echo(f"time     {total:.2f} s (constructive mapping {res.construct_seconds:.2f} s, model building "
               f"{res.build_seconds:.2f} s, search {res.solve_seconds:.2f} s, certification {res.certify_seconds:.2f} s, "
               f"{len(res.segments)} segment models)")
    print_result(inst, res.mapping, res.evaluation, baselines=_against(baselines))
