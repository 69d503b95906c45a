"""FuseMax's comparison, reproduced in our model: `python bench/bench_attention.py [--quick] [--det S]`.

For each model (BERT, TrXL, T5, XLM) and sequence length on the FuseMax cloud machine (batch 64 by default):
mapsolve's optimum of each cascade (1-, 2-, 3-pass) for the objective (latency by default), FuseMax's own 1-pass
mapping written by hand (bench/attention_baselines.py) and a FLAT-style fused 3-pass dataflow, all evaluated by
the model. Prints one table and writes docs/attention.md (table, ratios, solve times, and where our model and
the paper's differ). Not a timed test: solve times are reported, never asserted.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from attention_baselines import flat_mapping, fusemax_mapping  # noqa: E402
from mapsolve.model.make import attention  # noqa: E402
from mapsolve.model.variants import alternatives  # noqa: E402
from mapsolve.solver import solve  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEQS = [1024, 4096, 16384, 65536, 262144, 1048576]
MODELS = ["bert", "trxl", "t5", "xlm"]


def figures(inst, res) -> dict:
    """Latency, energy, per-array busy fraction and DRAM words of an evaluated mapping."""
    lat = res.latency_cycles
    busy = {u: c.cycles for u, c in res.units.items()}
    dram = sum(c.reads + c.writes for (lv, _), c in res.counts.items() if lv == "DRAM")
    return {"latency_cycles": lat, "energy_fj": res.energy_fj,
            "util_2d": busy.get("mac2d", 0) / lat if lat else 0.0,
            "util_1d": busy.get("vec1d", 0) / lat if lat else 0.0, "dram_words": dram}


def point(model: str, seq: int, batch: int, objective: str, det: float, workers: int = 1) -> dict:
    inst = attention(model, seq, batch, "fusemax-cloud", "all", objective=objective)
    row = {"model": model, "seq": seq, "batch": batch, "cascades": {}}
    for name, alt in alternatives(inst):
        t0 = time.perf_counter()
        r = solve(alt, objective, deterministic_time=det, workers=workers)
        wall = time.perf_counter() - t0
        entry = {"status": r.status, "gap": r.gap, "wall_s": round(wall, 1),
                 "det_s": round(sum(s.deterministic_time for s in r.segments), 2)}
        if r.evaluation is not None:
            entry.update(figures(alt, r.evaluation))
            entry["groups"] = [g.einsums for g in r.mapping.groups]
        row["cascades"][name] = entry
    for label, build in (("fusemax", fusemax_mapping), ("flat", flat_mapping)):
        got = build(inst)
        row[label] = None if got is None else {**figures(inst, got[1]), "tile": got[2]}
    return row


def fmt_e(fj):
    return f"{fj / 1e12:.3g} mJ" if fj is not None else "-"


def table(rows, objective) -> str:
    lines = [f"| model | seq | cascade | status | latency (Mcycles) | energy | 2-D util | 1-D util | DRAM (Mwords) "
             f"| solve (wall s / det s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for name, c in row["cascades"].items():
            if "latency_cycles" not in c:
                lines.append(f"| {row['model']} | {row['seq']} | {name} | {c['status']} | - | - | - | - | - | "
                             f"{c['wall_s']} / {c['det_s']} |")
                continue
            gap = f" (gap {100 * c['gap']:.2g}%)" if c["gap"] else ""
            lines.append(f"| {row['model']} | {row['seq']} | mapsolve {name} | {c['status']}{gap} | "
                         f"{c['latency_cycles'] / 1e6:.4g} | {fmt_e(c['energy_fj'])} | {c['util_2d']:.2f} | "
                         f"{c['util_1d']:.2f} | {c['dram_words'] / 1e6:.4g} | {c['wall_s']} / {c['det_s']} |")
        for label in ("fusemax", "flat"):
            b = row[label]
            if b is None:
                lines.append(f"| {row['model']} | {row['seq']} | {label} (hand) | does not fit | - | - | - | - | - | - |")
                continue
            lines.append(f"| {row['model']} | {row['seq']} | {label} (hand, tile {b['tile']}) | evaluated | "
                         f"{b['latency_cycles'] / 1e6:.4g} | {fmt_e(b['energy_fj'])} | {b['util_2d']:.2f} | "
                         f"{b['util_1d']:.2f} | {b['dram_words'] / 1e6:.4g} | - |")
    return "\n".join(lines)


def ratios(rows) -> str:
    lines = ["| model | seq | FLAT / FuseMax latency | FuseMax / FLAT energy | best 3-pass / best 1-pass latency | "
             "winner |", "|---|---|---|---|---|---|"]
    for row in rows:
        fm, fl = row["fusemax"], row["flat"]
        c = row["cascades"]
        r1 = f"{fl['latency_cycles'] / fm['latency_cycles']:.2f}" if fm and fl else "-"
        r2 = f"{fm['energy_fj'] / fl['energy_fj']:.2f}" if fm and fl else "-"
        ok = all("latency_cycles" in c.get(n, {}) for n in ("1pass", "3pass"))
        r3 = f"{c['3pass']['latency_cycles'] / c['1pass']['latency_cycles']:.2f}" if ok else "-"
        have = {n: v["latency_cycles"] for n, v in c.items() if "latency_cycles" in v}
        win = min(have, key=have.get) if have else "-"
        lines.append(f"| {row['model']} | {row['seq']} | {r1} | {r2} | {r3} | {win} |")
    return "\n".join(lines)


NOTES = """
## Where our model and FuseMax's differ

- **Intermediates live at the fusion level.** In our model a fused intermediate's backing level is the group's
  fusion level, which must be a single instance (the global buffer here). FuseMax keeps QK and SLN in the PE
  registers and never writes them to the buffer; our hand-written FuseMax mapping (and every mapping mapsolve can
  find) writes them to the buffer and reads them back from it. With the assumed 1024 words/cycle buffer this
  traffic, not the 2-D array, bounds latency, which is why the 2-D utilisation here is far below FuseMax's
  0.9-0.99 and the FuseMax/FLAT gap is far smaller than 6.7x. Expressing register-resident intermediates
  (spatially aligned producer and consumers below the fusion level) is the model change this comparison asks for.
- **Overlap.** Our latency is per fused group the busiest unit or level (units and levels overlap fully within a
  group, groups run in sequence). FuseMax pipelines the 2-D and 1-D arrays across consecutive tiles the same way;
  it also overlaps the prologue/epilogue of tiles, which we do not model.
- **exp** costs 6 MACs + 1 add and takes 7 cycles per element on either array (as FuseMax counts it).
- **FLAT's baseline** here has a 1-D array for the softmax (FLAT has an SFU) and the same buffer bandwidth and
  energies; FLAT's real traffic explosion at long sequences appears as the fused block no longer fitting (the
  hand mapping then shrinks the block; at the longest sequences no block of rows fits and the row says so).
- **Machine numbers that are assumptions** (buffer bandwidth, register sizes) are in the instances' descriptions.
"""


MARK = "<!-- generated above by bench/bench_attention.py; written by hand below -->"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="bert")
    ap.add_argument("--seqs", default="1024,4096")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--objective", default="latency")
    ap.add_argument("--det", type=float, default=60.0, help="CP-SAT deterministic seconds per cascade")
    ap.add_argument("--workers", type=int, default=1, help="processes solving segments (the answer is the same)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "attention.json")
    ap.add_argument("--with-rows", type=Path, action="append", default=[],
                    help="rows of an earlier run (its --json) to put in the table after this run's")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "attention.md")
    args = ap.parse_args(argv)
    rows = []
    for model in [m for m in args.models.split(",") if m]:   # --models "" only renders --with-rows
        for seq in [int(s) for s in args.seqs.split(",") if s]:
            t0 = time.perf_counter()
            row = point(model, seq, args.batch, args.objective, args.det, args.workers)
            rows.append(row)
            print(f"{model} {seq}: {time.perf_counter() - t0:.0f} s", flush=True)
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
    earlier = [row for path in args.with_rows for row in json.loads(path.read_text())]
    also = "".join(f" and the rows of `{path.name}` (an earlier run's `--json`)" for path in args.with_rows)
    rows = rows + earlier
    text = (f"# Attention cascades on FuseMax cloud (generated by bench/bench_attention.py)\n\n"
            + (f"Command: `python bench/bench_attention.py --models {args.models} --seqs {args.seqs} --batch "
               f"{args.batch} --objective {args.objective} --det {args.det} --workers {args.workers}`{also}. "
               if args.models else f"Rows of earlier runs of this bench: {also[5:]}. ")
            + f"Objective: {args.objective}; each cascade solved alone with {args.det} deterministic seconds "
            f"(status OPTIMAL = proven).\n\n"
            + table(rows, args.objective) + "\n\n## Ratios\n\n" + ratios(rows) + "\n\nThe paper's headline "
            "(FuseMax vs FLAT on attention): 6.7x speedup at 79 % of the energy, 2-D utilisation 0.89-0.99 vs "
            "0.11-0.25.\n" + NOTES)
    kept = ""
    if args.doc.exists() and MARK in args.doc.read_text():   # hand-written observations below the mark survive
        kept = args.doc.read_text().split(MARK, 1)[1]
    args.doc.write_text(text + "\n" + MARK + kept)
    print(table(rows, args.objective))
    print(ratios(rows))


if __name__ == "__main__":
    main()
