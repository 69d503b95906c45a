"""The typer application and the one way errors leave the CLI.

Exit codes: 0 success; 1 verification disagreement; 2 bad input (file, JSON, spec, mapping rules, refused
objective); 3 infeasible instance; 4 no mapping found within the limits; 5 internal inconsistency (a bug:
solver and evaluator disagree); 130 interrupted.
"""
from __future__ import annotations

import os
from pathlib import Path

import typer

EXIT_MISMATCH, EXIT_INPUT, EXIT_INFEASIBLE, EXIT_NO_SOLUTION, EXIT_BUG, EXIT_INTERRUPTED = 1, 2, 3, 4, 5, 130

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Optimal mappings of attention and transformer Einsum cascades onto spatial accelerators. "
                       "`mapsolve INSTANCE` is `mapsolve solve INSTANCE`.")


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM outside a search (typer turns KeyboardInterrupt into a silent exit 130)."""


def fail(message: str, code: int = EXIT_INPUT) -> None:
    """Print one line to stderr and exit."""
    typer.echo("mapsolve: error: " + " ".join(str(message).splitlines()), err=True)
    raise typer.Exit(code)


def load_valid_mapping(instance, mapping):
    """(instance, mapping, its analysis), the mapping checked against the instance's rules and capacities, or exit
    2 with one line (naming the mapping's file when the mapping breaks a rule)."""
    from mapsolve.model import InputError, MappingError, analyze, check_capacity, load_instance, load_mapping
    try:
        inst = load_instance(instance)
        mp = load_mapping(mapping)
    except InputError as exc:
        fail(str(exc))
    try:
        result = analyze(inst, mp)
        check_capacity(inst, result)
    except MappingError as exc:
        fail(f"{mapping}: {exc}")
    return inst, mp, result


def load_instance_or_fail(path, time_limit: float | None = None):
    """The instance at `path`, or exit 2 with one line; also checks a --time-limit given beside it."""
    from mapsolve.model import InputError, load_instance
    try:
        inst = load_instance(path)
    except InputError as exc:
        fail(str(exc))
    check_run_options(time_limit=time_limit)
    return inst


def check_run_options(time_limit: float | None = None, deterministic_time: float | None = None,
                      seed: int | None = None, workers: int | None = None, objective: str | None = None) -> None:
    """Exit 2 naming the flag when a search option is out of range (before anything slow starts); the rule is
    mapsolve.options' (the Python API's too)."""
    from mapsolve.options import OptionError, check_options
    try:
        check_options(True, time_limit, deterministic_time, seed, workers, objective)
    except OptionError as exc:
        fail(str(exc))


def with_nesting(inst, nesting: str | None):
    """The instance with solver.nesting set from --nesting (exit 2 on anything but tree or flat)."""
    if nesting is None:
        return inst
    if nesting not in ("tree", "flat"):
        fail(f"--nesting must be tree or flat, not {nesting!r}")
    return inst.model_copy(update={"solver": inst.solver.model_copy(update={"nesting": nesting})})


def check_output_path(flag: str, path, prefix: bool = False) -> None:
    """Exit 2 naming `flag` when `path` cannot be written, before any search starts (so a long search never ends
    with its result lost). `prefix`: the path is a file-name prefix (--export-model writes PATH.NNN-….pb.txt).
    A probe file of a few bytes is written and removed in the folder, which also catches a full disk."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_file() and not p.is_dir():   # /dev/null, a FIFO: written in place, never replaced
        if not os.access(p, os.W_OK):
            fail(f"{flag} {p}: not writable")
        return
    if not prefix and p.is_dir():
        fail(f"{flag} {p}: is a folder; give a file name")
    folder = p.parent
    if not folder.is_dir():
        fail(f"{flag} {p}: folder {folder} does not exist")
    if p.is_file() and not os.access(p, os.W_OK):
        fail(f"{flag} {p}: the file is read-only")
    probe = folder / f".mapsolve-probe-{os.getpid()}"
    try:
        with open(probe, "w") as fh:
            fh.write("probe\n" * 64)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        fail(f"{flag} {p}: cannot write in {folder}: {exc.strerror or exc}")
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (a temporary file renamed over it): an interrupt or a full disk
    never leaves a truncated file behind."""
    if path.exists() and not path.is_file():   # /dev/stdout, a FIFO: write in place (never rename over it)
        with open(path, "w") as fh:
            fh.write(text)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
