"""`mapsolve sweep SWEEP.yaml -o results/`: a design-space sweep (the `mapsolve.sweep` package), resumable."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Optional

import typer

from .app import EXIT_INPUT, EXIT_INTERRUPTED, Interrupted, app, fail


def load_sweep(path: Path):
    """The sweep file (YAML or JSON), or exit 2 naming the key or the cause."""
    from pydantic import ValidationError
    from mapsolve.model.load import one_line
    from mapsolve.sweep.spec import Sweep
    try:
        text = path.read_text()
    except OSError as exc:
        fail(f"{path}: cannot read: {exc.strerror or exc}")
    try:
        if path.suffix == ".json":
            doc = json.loads(text)
        else:
            import yaml
            doc = yaml.safe_load(text)
    except Exception as exc:   # yaml.YAMLError, json.JSONDecodeError: one line either way
        fail(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {' '.join(str(exc).split())[:200]}")
    if not isinstance(doc, dict):
        fail(f"{path}: a mapping of keys (base or make, grid, list, objectives, limits) is expected")
    try:
        return Sweep.model_validate(doc)
    except ValidationError as err:
        fail(f"{path}: {one_line(err)}")


@app.command("sweep")
def sweep_command(
    sweep_file: Path = typer.Argument(..., help="Sweep file (YAML or JSON): base or make, grid and/or list, "
                                      "objectives, limits (docs/sweeps.md)."),
    out: Path = typer.Option(..., "--out", "-o", help="Results folder: results.csv, points/, plots."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Points solved at once (default: the CPUs); "
                                       "each with one CP-SAT worker, so the table does not depend on it."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Solve the points as Ray tasks on the cluster at this "
                                      "address (\"auto\", HOST:6379, ray://HOST:10001) or on a Ray instance "
                                      "started here (\"local\", --jobs CPUs); needs pip install \"mapsolve[ray]\" "
                                      "on every node (docs/sweeps.md)."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write the plots (needs matplotlib)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Solve every point of a sweep (re-verified by the model), one table; a re-run skips finished points."""
    sweep = load_sweep(sweep_file)
    from mapsolve.solver.search import OBJECTIVES
    for obj in sweep.objectives:
        if obj not in (*OBJECTIVES, "edp"):
            fail(f"{sweep_file}: objectives: {obj!r} is not one of {', '.join((*OBJECTIVES, 'edp'))}")
    if jobs is None:
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not 1 <= jobs <= 256:
        fail(f"--jobs must be between 1 and 256, not {jobs}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--out {out}: cannot make the folder: {exc.strerror or exc}")
    if ray is not None and not ray.strip():
        fail("--ray: give a cluster address (auto, HOST:6379, ray://HOST:10001) or local")
    from mapsolve.sweep.points import expand
    from mapsolve.sweep.ray_run import RayError
    from mapsolve.sweep.run import run_sweep
    total = len(expand(sweep))
    progress = None
    if not quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            TextColumn("{task.description}"), transient=False)
    from .solve_cmd import checkpoint
    try:
        with progress if progress is not None else contextlib.nullcontext():
            task = progress.add_task("", total=total) if progress is not None else None

            def on_row(row, done, n):
                if progress is not None:
                    progress.update(task, completed=done, description=f"last: {row.get('status')}")
                checkpoint("sweep_row")   # testing hook: an interrupt once a row is kept
            rows, skipped = run_sweep(sweep, sweep_file.resolve().parent, out, jobs, on_row, ray_address=ray)
    except RayError as exc:
        fail(str(exc))
    except (KeyboardInterrupt, Interrupted):
        fail(f"interrupted: every finished point is kept in {out / 'points'}; run again to resume", EXIT_INTERRUPTED)
    plots = []
    if plot:
        try:
            from mapsolve.sweep.plots import plot_rows
            plots = plot_rows(rows, out)
        except ImportError:
            typer.echo("note     no plots: pip install '.[plot]'", err=True)
    bad = sum(1 for r in rows if r.get("status") not in ("OPTIMAL", "FEASIBLE"))
    typer.echo(f"sweep    {len(rows)} points ({skipped} finished before, skipped), {bad} without a mapping or "
               f"invalid; table {out / 'results.csv'}; {len(plots)} plots")
    if any(r.get("status") == "MISMATCH" for r in rows):
        fail("internal inconsistency: a point's solver and evaluator figures differ (status MISMATCH)", 5)
