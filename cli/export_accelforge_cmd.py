"""`mapsolve export accelforge`: a mapping as AccelForge's LoopTree mapping YAML."""
from __future__ import annotations

from pathlib import Path

import typer

from .app import check_output_path, fail, load_valid_mapping, write_atomically
from .export_cmd import export_app


@export_app.command("accelforge")
def export_accelforge(
        instance: Path = typer.Argument(..., help="Instance JSON file (e.g. one `mapsolve import accelforge` wrote)."),
        mapping: Path = typer.Argument(..., help="Mapping JSON file (or a `mapsolve --json` result)."),
        output: Path = typer.Option(..., "-o", "--output", help="LoopTree mapping YAML to write.")) -> None:
    """Write MAPPING as AccelForge's LoopTree mapping (docs/interop.md): give it to AccelForge with the arch and
    workload the instance was imported from."""
    from mapsolve.interop.accelforge_export import export
    from mapsolve.interop.accelforge_yaml import Refused
    check_output_path("-o", output)
    inst, mp, _ = load_valid_mapping(instance, mapping)   # only a valid mapping is exported
    try:
        text, notes = export(inst, mp)
    except Refused as exc:
        fail(f"{mapping}: {exc}")
    write_atomically(output, text)
    typer.echo(f"{output}: LoopTree mapping of {len(mp.einsums)} einsums ({len(mp.groups)} fused groups)")
    for note in notes:
        typer.echo(f"note: {note}")
