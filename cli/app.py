"""The typer application and the one way errors leave the CLI.

Exit codes: 0 success; 1 verification disagreement; 2 bad input (file, JSON, spec, mapping rules, refused
objective); 3 infeasible instance; 4 no mapping found within the limits; 5 internal inconsistency (a bug:
solver and evaluator disagree); 130 interrupted.
"""
from __future__ import annotations

import typer

EXIT_MISMATCH, EXIT_INPUT, EXIT_INFEASIBLE, EXIT_NO_SOLUTION, EXIT_BUG, EXIT_INTERRUPTED = 1, 2, 3, 4, 5, 130

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Optimal mappings of attention and transformer Einsum cascades onto spatial accelerators. "
                       "`mapsolve INSTANCE` is `mapsolve solve INSTANCE`.")


def fail(message: str, code: int = EXIT_INPUT) -> None:
    """Print one line to stderr and exit."""
    typer.echo("mapsolve: error: " + " ".join(str(message).splitlines()), err=True)
    raise typer.Exit(code)


def load_instance_or_fail(path, time_limit: float | None = None):
    """The instance at `path`, or exit 2 with one line; also checks a --time-limit given beside it."""
    from mapsolve.model import InputError, load_instance
    try:
        inst = load_instance(path)
    except InputError as exc:
        fail(str(exc))
    if time_limit is not None and time_limit <= 0:
        fail("--time-limit must be positive")
    return inst


def with_nesting(inst, nesting: str | None):
    """The instance with solver.nesting set from --nesting (exit 2 on anything but tree or flat)."""
    if nesting is None:
        return inst
    if nesting not in ("tree", "flat"):
        fail(f"--nesting must be tree or flat, not {nesting!r}")
    return inst.model_copy(update={"solver": inst.solver.model_copy(update={"nesting": nesting})})
