"""The `mapsolve` command. `mapsolve INSTANCE` solves; subcommands evaluate, validate, schema, ... sit beside it.

Exit codes are in cli/app.py.
"""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import typer

from mapsolve.model import InputError
from mapsolve.model.load import read_document, read_instance
from mapsolve.model.spec import Instance, Mapping

from . import solve_cmd, trace_cmd  # noqa: F401  (register `solve` and `trace`)
from . import verify_cmd  # noqa: F401  (registers `enumerate` and `verify`)
from . import make_cmd  # noqa: F401  (registers `make` and `passes`)
from . import pareto_cmd  # noqa: F401  (registers `pareto`)
from . import sweep_cmd  # noqa: F401  (registers `sweep`)
from . import import_cmd  # noqa: F401  (registers `import accelforge`)
from .export_cmd import export_app
from . import export_accelforge_cmd  # noqa: F401  (registers `export accelforge`)
from .app import EXIT_INPUT, EXIT_INTERRUPTED, Interrupted, app, fail, load_valid_mapping
from .report import print_result

app.add_typer(export_app, name="export")

@app.command()
def evaluate(instance: Path = typer.Argument(..., help="Instance file (JSON or YAML)."),
             mapping: Path = typer.Argument(..., help="Mapping file, JSON or YAML (or a `mapsolve --json` result)."),
             as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON.")) -> None:
    """Evaluate a mapping exactly: energy (fJ), latency (cycles) and the breakdown."""
    inst, mp, result = load_valid_mapping(instance, mapping)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=1))
        return
    from mapsolve.solver.baseline import shipped, shipped_mapping_path
    baselines = []
    beside = shipped_mapping_path(instance)
    if beside is not None and beside.resolve() != Path(mapping).resolve():   # not the shipped mapping itself
        base, why = shipped(inst, instance)
        baselines.append((f"shipped mapping {beside}", base, why))
    print_result(inst, mp, result, baselines=baselines)


@app.command()
def validate(instance: Path = typer.Argument(..., help="Instance file (JSON or YAML).")) -> None:
    """Check an instance file: spec, names, numbers, architecture facts; show every quantity converted from units."""
    try:
        inst, conversions = read_instance(instance)
    except InputError as exc:
        if _looks_like_a_mapping(instance):
            fail(f"{instance}: this is a mapping file, not an instance (check a mapping with `mapsolve evaluate "
                 f"INSTANCE {instance}`)")
        fail(str(exc))
    wl = inst.workload
    typer.echo(f"{instance}: ok — {len(wl.einsums)} einsums, {len(wl.ranks)} ranks, "
               f"{len(inst.architecture.levels)} levels, {len(inst.architecture.compute_units)} compute units")
    if conversions:   # every quantity given with a unit: the text, and the exact value the model uses
        typer.echo(f"converted {len(conversions)} quantities with units (field: given -> exact value used):")
        for c in conversions:
            typer.echo(f"  {c.show()}")
    from mapsolve.model.variants import alternatives
    from mapsolve.solver.limits import representability_notes   # loads ortools: only after the spec is fine
    alts = alternatives(inst)
    for name, alt in alts:   # valid, but beyond what CP-SAT can prove: say so before anyone waits for a proof
        for note in representability_notes(alt, seconds=5.0 / len(alts)):
            typer.echo(f"note: {f'variant {name}: ' if len(alts) > 1 else ''}{note}")


def _looks_like_a_mapping(path: Path) -> bool:
    try:
        doc = read_document(Path(path).read_text(), str(path))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "workload" not in doc and ("einsums" in doc or "mapping" in doc)


@app.command()
def schema(kind: str = typer.Argument(..., help="instance or mapping")) -> None:
    """Print the JSON Schema of an instance or a mapping file."""
    models = {"instance": Instance, "mapping": Mapping}
    if kind not in models:
        fail(f"schema: unknown kind {kind!r}; use instance or mapping")
    schema = models[kind].model_json_schema()
    if kind == "instance":
        from mapsolve.model.quantities import schema_with_units
        schema = schema_with_units(schema)
    typer.echo(json.dumps(schema, indent=1))


@app.command("version")
def version_command() -> None:
    """Print mapsolve's version and the versions it runs on (ortools, Python); also `mapsolve --version`."""
    typer.echo(version_line())


def version_line() -> str:
    import platform
    from importlib import metadata
    import mapsolve

    try:
        ortools = metadata.version("ortools")
    except metadata.PackageNotFoundError:
        ortools = "not installed"
    return f"mapsolve {mapsolve.__version__} (ortools {ortools}, Python {platform.python_version()})"


def _click_exceptions():
    """typer >= 0.26 vendors click as `typer._click`; older releases use click itself."""
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions
    return exceptions


def _interrupt(*_) -> None:
    raise Interrupted


def run() -> None:
    """Entry point: `mapsolve INSTANCE [options]` is shorthand for `mapsolve solve INSTANCE [options]`."""
    for sig in (signal.SIGINT, signal.SIGTERM):   # until a search installs its own handler (cli/solve_cmd.py)
        signal.signal(sig, _interrupt)
    argv = sys.argv[1:]
    if argv and argv[0] in ("--version", "-V"):
        argv = ["version", *argv[1:]]
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    names |= {g.name for g in app.registered_groups}
    if argv and argv[0] not in names and not argv[0].startswith("-") and "solve" in names:
        argv = ["solve", *argv]
    ce = _click_exceptions()
    try:
        code = app(args=argv, prog_name="mapsolve", standalone_mode=False)
    except getattr(ce, "NoArgsIsHelpError", ()) as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        sys.exit(EXIT_INPUT)
    except ce.UsageError as exc:  # one line, like every other input error
        where = exc.ctx.command_path if exc.ctx else "mapsolve"
        typer.echo(f"mapsolve: error: {' '.join(exc.format_message().split())} (see '{where} --help')", err=True)
        sys.exit(EXIT_INPUT)
    except (Interrupted, KeyboardInterrupt, typer.Abort, getattr(ce, "Abort", typer.Abort)):
        typer.echo("mapsolve: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
