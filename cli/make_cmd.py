"""`mapsolve make attention|butterfly|hybrid` (instances of the papers' workloads and machines) and `mapsolve passes` (FuseMax's
pass analysis of every cascade of an instance)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import app, fail, load_instance_or_fail, write_atomically

make_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Write instances of the papers' workloads on the papers' machines.")
app.add_typer(make_app, name="make")


@make_app.command("attention")
def make_attention(
    model: str = typer.Option(..., "--model", help="bert, trxl, t5, xlm, gpt3-6.7b, llama2-7b, llama3-8b."),
    seq: int = typer.Option(..., "--seq", help="Sequence length (keys; also query rows unless --decode)."),
    batch: int = typer.Option(1, "--batch", help="Batch size."),
    arch: str = typer.Option("fusemax-cloud", "--arch", help="fusemax-cloud, flat-cloud, flat-edge, "
                             "tileflow-edge, tileflow-cloud, tpu-v4i."),
    cascade: str = typer.Option("all", "--cascade", help="1pass, 2pass, 3pass, or all (the 1-pass cascade with "
                                "the others as variants: the mapper proves which wins)."),
    decode: bool = typer.Option(False, "--decode", help="Decode: one query row against --seq keys."),
    tile: Optional[int] = typer.Option(None, "--tile", help="Keys per tile M0 (default: the 2-D array's side, "
                                       "or --seq if smaller)."),
    objective: str = typer.Option("energy", "--objective", help="The instance's default objective."),
    out: Path = typer.Option(..., "-o", "--out", help="Instance file to write: YAML for .yaml/.yml, else JSON."),
) -> None:
    """One attention layer (all heads) as 1-, 2- and/or 3-pass Einsum cascades (FuseMax)."""
    from mapsolve.model.make import attention
    _write(out, lambda: attention(model, seq, batch, arch, cascade, decode, tile, objective))


@make_app.command("butterfly")
def make_butterfly(
    n: int = typer.Option(..., "--n", help="Points mixed along the sequence (a power of two; also the sequence "
                          "length when only the hidden dimension is mixed)."),
    batch: int = typer.Option(1, "--batch", help="Batch size."),
    hidden: int = typer.Option(..., "--hidden", help="Hidden channels (a power of two when mixed)."),
    radix: int = typer.Option(2, "--radix", help="Points per butterfly block (a power of two): stages = "
                              "log_radix of the mixed size."),
    mix: str = typer.Option("seq", "--mix", help="seq, hidden, or both (sequence stages, then hidden stages)."),
    weights: str = typer.Option("learned", "--weights", help="learned (every block its own weights) or fft "
                                "(fixed twiddles, complex data)."),
    arch: str = typer.Option("dataflow-array", "--arch", help="dataflow-array, fusemax-cloud, flat-cloud, "
                             "flat-edge, tileflow-edge, tileflow-cloud, tpu-v4i."),
    objective: str = typer.Option("energy", "--objective", help="The instance's default objective."),
    out: Path = typer.Option(..., "-o", "--out", help="Instance file to write: YAML for .yaml/.yml, else JSON."),
) -> None:
    """One butterfly mixing layer as a cascade of stage Einsums (model/butterfly.py)."""
    from mapsolve.model.make import butterfly
    _write(out, lambda: butterfly(n, batch, hidden, radix, arch, mix, weights, objective))


@make_app.command("hybrid")
def make_hybrid(
    blocks: int = typer.Option(4, "--blocks", help="Blocks in the stack."),
    attention: int = typer.Option(1, "--attention", help="How many of them keep softmax attention."),
    where: str = typer.Option("bottom", "--where", help="Where the attention blocks sit: bottom, top or middle."),
    seq: int = typer.Option(256, "--seq", help="Sequence length (a power of two)."),
    hidden: int = typer.Option(64, "--hidden", help="Hidden channels."),
    heads: int = typer.Option(4, "--heads", help="Attention heads (dividing --hidden)."),
    ffn: int = typer.Option(256, "--ffn", help="FFN channels."),
    radix: int = typer.Option(16, "--radix", help="Butterfly radix over the sequence digits."),
    batch: int = typer.Option(1, "--batch", help="Batch size."),
    arch: str = typer.Option("dataflow-array", "--arch", help="dataflow-array, fusemax-cloud, flat-cloud, "
                             "flat-edge, tileflow-edge, tileflow-cloud, tpu-v4i."),
    objective: str = typer.Option("energy", "--objective", help="The instance's default objective."),
    ffn_mix: str = typer.Option("dense", "--ffn-mix", help="dense (two matmuls) or butterfly (each projection "
                                "--ffn/--hidden stacked butterflies over the hidden digits)."),
    ffn_radix: Optional[int] = typer.Option(None, "--ffn-radix", help="Radix of the hidden digits of a butterfly "
                                            "FFN (default: --radix)."),
    out: Path = typer.Option(..., "-o", "--out", help="Instance file to write: YAML for .yaml/.yml, else JSON."),
) -> None:
    """A stack of butterfly-mixing blocks with a few softmax-attention blocks, mapped as one instance."""
    from mapsolve.model.make import hybrid
    _write(out, lambda: hybrid(blocks, attention, where, seq, hidden, heads, ffn, radix, batch, arch, objective,
                               ffn_mix, ffn_radix))


def _write(out: Path, make) -> None:
    """Build an instance with `make()` and write it, with one-line errors."""
    from pydantic import ValidationError
    from mapsolve.model.load import one_line
    from mapsolve.model.make import MakeError
    try:
        inst = make()
    except MakeError as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail(one_line(exc))
    try:
        doc = inst.model_dump(mode="json", exclude_defaults=True)
        if out.suffix.lower() in (".yaml", ".yml"):   # the same schema; decimals and fractions stay quoted text
            import yaml
            write_atomically(out, yaml.safe_dump(doc, sort_keys=False, width=120, allow_unicode=True))
        else:
            write_atomically(out, json.dumps(doc, indent=1) + "\n")
    except OSError as exc:
        fail(f"-o {out}: cannot write: {exc.strerror or exc}")
    typer.echo(f"{out}: {inst.name} — {', '.join(n for n, _ in inst.workload.alternatives())}; "
               f"{len(inst.workload.einsums)} einsums; ranks {inst.workload.ranks}")


@app.command("passes")
def passes_command(instance: Path = typer.Argument(..., help="Instance JSON file."),
                   as_json: bool = typer.Option(False, "--json", help="Print the analysis as JSON.")) -> None:
    """Lower bound on passes over each reduced dimension, per cascade, and what extra passes cost."""
    from mapsolve.model.passes import analyze_passes
    inst = load_instance_or_fail(instance)
    reports = [analyze_passes(wl, name) for name, wl in inst.workload.alternatives()]
    if as_json:
        typer.echo(json.dumps({"instance": inst.name, "cascades": [r.to_json() for r in reports]}, indent=1))
        return
    bits = inst.workload.word_bits
    for r in reports:
        typer.echo(f"cascade {r.variant}: {r.passes} pass{'es' if r.passes > 1 else ''} over its inputs")
        for t, (S, k) in r.inputs.items():
            typer.echo(f"  {t:<6} {k} over {'·'.join(S)}")
        typer.echo("  per rank: " + ", ".join(f"{x} {k}" for x, k in r.ranks.items()))
        for c in r.crossings:
            typer.echo(f"  crosses: {c.tensor} (written in pass {c.written_in}, read in {c.read_in}): fused, "
                       f"{c.along} elements along {'·'.join(c.over)} per point of its other ranks stay on chip "
                       f"(grows with the sequence); unfused, {c.dram_bits // bits:,} words of DRAM traffic")
