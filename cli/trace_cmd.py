"""`mapsolve trace summary|plot TRACE...`: read solver traces (docs/traces.md) back."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mapsolve.solver.trace import read_trace

from .app import app, fail

trace_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Read solver traces back.")
app.add_typer(trace_app, name="trace")


def _load(path: Path) -> list[dict]:
    if not path.is_file():
        fail(f"{path}: no such trace file")
    records = read_trace(path)
    if not records or records[0].get("type") != "header":
        fail(f"{path}: not a mapsolve trace (no header record)")
    return records


def _totals(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r.get("type") == kind and r.get("scope") == "total"]


def proof_time(records: list[dict]) -> float | None:
    """When the whole cascade's bound met its incumbent (a proved trace), on the search's clock; not the final
    record's time, which for `verify` also counts the enumerators."""
    final = next((r for r in records if r.get("type") == "final"), None)
    if not final or not final.get("proof"):
        return None
    inc = bound = None
    for r in sorted(_totals(records, "incumbent") + _totals(records, "bound"), key=lambda r: r["wall"]):
        if r["type"] == "incumbent":
            inc = r["objective"]
        if r.get("best_bound") is not None:
            bound = r["best_bound"] if bound is None else max(bound, r["best_bound"])
        if inc is not None and bound is not None and bound >= inc:
            return r["wall"]
    return final.get("wall")


def summarize(records: list[dict]) -> dict:
    """Key figures of one trace: final status, first and last incumbent, time of the proof."""
    head = records[0]
    final = next((r for r in records if r.get("type") == "final"), None)
    incs = _totals(records, "incumbent")
    return {
        "instance": head.get("instance"), "objective": head.get("options", {}).get("objective"),
        "status": final.get("status") if final else "PARTIAL (no final record)",
        "best": final.get("objective") if final else (incs[-1]["objective"] if incs else None),
        "bound": final.get("best_bound") if final else None,
        "gap": final.get("gap") if final else None,
        "first_incumbent_s": incs[0]["wall"] if incs else None,
        "last_incumbent_s": incs[-1]["wall"] if incs else None,
        "proof_s": proof_time(records),
        "segment_models": sum(1 for r in records if r.get("type") == "segment_start"),
        "events": len(records),
        "build_seconds": final.get("build_seconds") if final else None,
        "search_seconds": final.get("search_seconds") if final else None,
        "model_size": final.get("model_size") if final else None,
    }


@trace_app.command("summary")
def summary(traces: list[Path] = typer.Argument(..., help="Trace files (JSON Lines or CSV).")) -> None:
    """Print the key figures of one or more traces."""
    for path in traces:
        s = summarize(_load(path))
        typer.echo(f"{path}:")
        for k, v in s.items():
            typer.echo(f"  {k:<18} {v}")


@trace_app.command("plot")
def plot(traces: list[Path] = typer.Argument(..., help="Trace files; several are drawn on one plot."),
         out: Path = typer.Option(..., "-o", "--out", help="Image file to write (PNG, SVG, PDF)."),
         log_y: Optional[bool] = typer.Option(None, "--log-y/--linear-y",
                                              help="Log scale for objective and bound (default: when they "
                                                   "span more than a factor of 10).")) -> None:
    """Objective and bound of the whole cascade against time, the gap below, and the proof moment."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("trace plot needs matplotlib: pip install 'mapsolve[plot]'")
    fig, (ax, gx) = plt.subplots(2, 1, sharex=True, figsize=(8, 6), gridspec_kw={"height_ratios": [2, 1]})
    values = []
    for n, path in enumerate(traces):
        records = _load(path)
        color = f"C{n}"
        label = f"{path.name} ({records[0].get('instance')}, {records[0].get('options', {}).get('objective')})"
        incs = _totals(records, "incumbent")
        bounds = _totals(records, "bound")
        final = next((r for r in records if r.get("type") == "final"), None)
        proved = proof_time(records)
        end = proved if proved is not None else (final["wall"] if final else max(r.get("wall", 0) for r in records))
        if incs:
            xs = [r["wall"] for r in incs] + [end]
            ys = [r["objective"] for r in incs] + [incs[-1]["objective"]]
            ax.step(xs, ys, where="post", color=color, label=f"incumbent: {label}")
            values += ys
        if bounds:
            xs = [r["wall"] for r in bounds] + [end]
            ys = [r["best_bound"] for r in bounds] + [bounds[-1]["best_bound"]]
            ax.step(xs, ys, where="post", color=color, linestyle="--", label="bound")
            values += [y for y in ys if y]
        gaps = []
        for r in sorted(incs + bounds, key=lambda r: r["wall"]):
            inc = [i for i in incs if i["wall"] <= r["wall"]]
            bnd = [b for b in bounds if b["wall"] <= r["wall"]]
            if inc and bnd:
                o, b = inc[-1]["objective"], bnd[-1]["best_bound"]
                gaps.append((r["wall"], 100 * (o - b) / max(abs(o), 1)))
        if gaps:
            gx.step([g[0] for g in gaps], [g[1] for g in gaps], where="post", color=color)
        if proved is not None:
            for a in (ax, gx):
                a.axvline(proved, color=color, linestyle=":", linewidth=1)
            ax.annotate("proved optimal", (proved, final["objective"]), color=color, fontsize=8)
    positive = [v for v in values if v and v > 0]
    if log_y or (log_y is None and positive and max(positive) > 10 * min(positive)):
        ax.set_yscale("log")
    ax.set_ylabel("objective / bound")
    ax.legend(fontsize=7)
    gx.set_ylabel("gap %")
    gx.set_xlabel("wall time (s)")
    fig.tight_layout()
    try:
        fig.savefig(out)
    except (OSError, ValueError) as exc:
        fail(f"-o {out}: cannot write: {exc}")
    typer.echo(f"wrote {out}")
