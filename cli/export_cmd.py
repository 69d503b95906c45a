"""`mapsolve export ...`: a mapsolve mapping written in another tool's mapping format."""
from __future__ import annotations

import typer

from .app import app

export_app = typer.Typer(no_args_is_help=True, help="Write a mapsolve mapping in another tool's mapping format.")
app.add_typer(export_app, name="export")
