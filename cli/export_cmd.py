"""`mapsolve export ...`: a mapping written as another tool's input files (docs/interop.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import fail, load_valid_mapping, write_atomically

export_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Write a mapping as the input files of another tool (docs/interop.md).")


def output_folder(out: Path) -> Path:
    """The folder to write in, created if missing (its parent must exist); exit 2 naming -o otherwise."""
    if out.exists() and not out.is_dir():
        fail(f"-o {out}: exists and is not a folder")
    if not out.exists():
        if not out.parent.is_dir():
            fail(f"-o {out}: folder {out.parent} does not exist")
        try:
            out.mkdir()
        except OSError as exc:
            fail(f"-o {out}: cannot create it: {exc.strerror or exc}")
    return out


@export_app.command("timeloop")
def export_timeloop(
    instance: Path = typer.Argument(..., help="Instance JSON file."),
    mapping: Path = typer.Argument(..., help="Mapping JSON file (or a `mapsolve --json` result)."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Folder to write (created if missing; default "
                                       "timeloop-<instance name> in the current folder)."),
) -> None:
    """Per Einsum, Timeloop's problem, mapping and ERT YAML, and the architecture tree (timeloop-model input)."""
    from mapsolve.interop.timeloop_export import ExportError, export
    from mapsolve.model import MappingError
    inst, mp, _ = load_valid_mapping(instance, mapping)
    try:
        files, einsums = export(inst, mp)
    except ExportError as exc:
        fail(f"{mapping}: {exc}")
    except MappingError as exc:   # pragma: no cover - load_valid_mapping ran the same checks
        fail(f"{mapping}: {exc}")
    folder = output_folder(out if out is not None else Path(f"timeloop-{inst.name}"))
    for name, text in files.items():
        try:
            write_atomically(folder / name, text)
        except OSError as exc:
            fail(f"-o {folder}: cannot write {name}: {exc.strerror or exc}")
    for ex in einsums:
        fused = ", ".join(m for m in ex.fused_with if m != ex.einsum)
        typer.echo(f"{ex.einsum}: timeloop-model {ex.arch_file} {ex.problem_file} {ex.mapping_file} {ex.ert_file}"
                   + (f"  (fused with {fused})" if fused else ""))
    typer.echo(f"wrote {len(files)} files in {folder}")
