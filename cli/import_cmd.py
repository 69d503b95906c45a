"""`mapsolve import accelforge`: another tool's input files → a mapsolve instance file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .app import app, check_output_path, fail, write_atomically

import_app = typer.Typer(no_args_is_help=True, help="Convert another tool's input files into a mapsolve instance.")
app.add_typer(import_app, name="import")


@import_app.command("accelforge")
def import_accelforge(
        arch: Path = typer.Argument(..., help="AccelForge arch YAML (Jinja-templated)."),
        workload: Path = typer.Argument(..., help="AccelForge workload YAML (Jinja-templated)."),
        sets: Optional[List[str]] = typer.Option(None, "--set", help="Template variable NAME=VALUE (repeatable), "
                                                 "e.g. --set VARIANT=qk_av --set SEQ=4096."),
        output: Path = typer.Option(..., "-o", "--output", help="Instance JSON file to write.")) -> None:
    """AccelForge arch + workload YAML → a mapsolve instance (docs/interop.md says what converts and how)."""
    from mapsolve.interop.accelforge_import import convert
    from mapsolve.interop.accelforge_yaml import Refused, parse_sets
    from mapsolve.model import InputError
    from mapsolve.model.load import check_instance, read_json, validate
    from mapsolve.model.spec import Instance
    check_output_path("-o", output)
    try:
        doc = convert(arch, workload, parse_sets(sets or []))
    except Refused as exc:
        fail(str(exc))
    text = json.dumps(doc, indent=1) + "\n"
    try:   # the instance must load exactly as the file will be read back
        inst = validate(Instance, read_json(text, str(output)), str(output))
        check_instance(inst, str(output))
    except InputError as exc:
        fail(f"the converted instance is refused by mapsolve: {exc}")
    write_atomically(output, text)
    wl = inst.workload
    typer.echo(f"{output}: {len(wl.einsums)} einsums, {len(wl.ranks)} ranks, {len(inst.architecture.levels)} "
               f"levels, {len(inst.architecture.compute_units)} compute units, clock "
               f"{inst.architecture.frequency_mhz} MHz (what was converted and how: the instance's description)")
