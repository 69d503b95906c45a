"""Butterfly mixing against dense softmax attention (not a test): proven optima on the same machines.

    python bench/bench_butterfly.py                      # N = 512 ... 16K, dataflow-array and fusemax-cloud
    python bench/bench_butterfly.py --n 512 4096 --arch dataflow-array --limit 60
    python bench/bench_butterfly.py --buffer-study       # fused-stage count against the shared buffer's size
    python bench/bench_butterfly.py --markdown out.md    # also write the tables as Markdown (docs/butterfly.md)

Per sequence length N and machine, two token-mixing layers over a hidden (head) dimension of D = 64, batch 1:

- **butterfly:** one learned butterfly layer over the sequence (`mapsolve make butterfly --n N --hidden 64`), radix
  2^⌈log2(N)/2⌉, so two stages (the shape the mapper can prove at these sizes, docs/butterfly.md);
- **attention:** one head of dense softmax attention, QK → softmax → AV with E = F = 64 and P = M = N, offered as
  FuseMax's 1-, 2- and 3-pass cascades (the mapper proves the best of the three; model/cascades.py).

Each is solved for energy and for latency (one CP-SAT worker, seed 0, `--limit` wall seconds each, or
`--deterministic-time`). A row prints status and gap, the optimum, MACs, DRAM words moved, the MAC unit's
utilisation, the largest fused group of butterfly stages, and the solve time; the summary prints attention ÷
butterfly for energy and latency beside the butterfly paper's claims (arXiv 2411.00734: 6.60-15.37x energy
reduction and 2.38-4.7x efficiency against attention accelerators of equal peak throughput). The comparison is per
layer: projections, FFNs and the network's accuracy are outside it.

The buffer study solves a 3-stage layer (N = 512, radix 8, D = 16) with the shared buffer (GLB) and the group
buffers (CORE) scaled together from a few words up, and prints the stages fused at each size.
"""
from __future__ import annotations

import argparse
import time
from math import ceil, log2, prod

from mapsolve.model.make import attention_workload, butterfly, key_tile, machine
from mapsolve.model.spec import Instance
from mapsolve.solver import solve

SIZES = [512, 1024, 2048, 4096, 8192, 16384]
ARCH_NAMES = ["dataflow-array", "fusemax-cloud"]
HIDDEN = 64
PAPER = "paper: 6.60-15.37x energy, 2.38-4.7x efficiency vs attention accelerators of equal peak throughput"


def radix_for(n: int) -> int:
    """The radix that writes N as two digits (the larger first)."""
    return 2 ** ceil(log2(n) / 2)


def butterfly_instance(n: int, arch: str) -> Instance:
    return butterfly(n, hidden=HIDDEN, radix=radix_for(n), arch=arch)


def attention_instance(n: int, arch: str) -> Instance:
    """One head, E = F = HIDDEN, P = M = n, keys split M1·M0 with M0 the 2-D array's side (as `make attention`)."""
    architecture, text = machine(arch)
    m0 = key_tile(architecture, n)
    ranks = {"H": 1, "E": HIDDEN, "F": HIDDEN, "P": n, "M1": n // m0, "M0": m0}
    wl = attention_workload(ranks, ["1pass", "2pass", "3pass"], ("H",))
    return Instance(name=f"attention_n{n}_e{HIDDEN}_{arch}",
                    description=f"One head of softmax attention, sequence {n}, head dim {HIDDEN}. {text}",
                    workload=wl, architecture=architecture, solver={"objective": "energy"})


def stages_fused(inst: Instance, res) -> int:
    """The most butterfly stages (Einsums named M<digit>) in one fused group of the mapping; 1 when unfused."""
    if res.evaluation is None:
        return 0
    stage = {e.name for e in inst.workload.einsums if e.op == "mac" and e.name.startswith("M")}
    return max((sum(1 for n in g.einsums if n in stage) for g in res.evaluation.groups), default=0)


def measure(kind: str, inst: Instance, objective: str, limit: float, det: float | None) -> dict:
    t0 = time.perf_counter()
    res = solve(inst, objective=objective, time_limit=None if det else limit, deterministic_time=det,
                workers=1, seed=0)
    wall = time.perf_counter() - t0
    ev = res.evaluation
    row = {"kind": kind, "objective": objective, "status": res.status, "wall": wall, "energy": None, "bound": None,
           "latency": None, "gap": None, "macs": None, "dram": None, "util": None, "fused": None,
           "variant": res.variant}
    if ev is None:
        return row
    value, bound = res.objective[0], (res.best_bound[0] if res.best_bound else 0)
    row["bound"] = bound * (res.energy_unit_fj if objective == "energy" else 1)
    row.update(energy=ev.energy_fj, latency=ev.latency_cycles, gap=(value - bound) / value if value else 0.0,
               macs=macs(inst, res.variant),
               dram=sum(c.reads + c.writes for (lv, _), c in ev.counts.items() if lv == "DRAM"),
               util=float(ev.utilization.get("mac2d", 0)),
               fused=stages_fused(inst, res) if kind == "butterfly" else None)
    return row


def macs(inst: Instance, variant) -> int:
    """The mapped cascade's MAC operations (of the winning variant when there are several)."""
    wl = dict(inst.workload.alternatives()).get(variant, inst.workload)
    return sum(prod(wl.ranks[r] for r in e.space) for e in wl.einsums if e.op == "mac")


def scaled_buffers(inst: Instance, words: int) -> Instance:
    """`inst` with the shared buffer at `words` and each group buffer at words/16 (at least 8): the study's knob."""
    levels = []
    for lv in inst.architecture.levels:
        if lv.name == "GLB":
            lv = lv.model_copy(update={"capacity_words": words})
        elif lv.name == "CORE":
            lv = lv.model_copy(update={"capacity_words": max(8, words // 16)})
        levels.append(lv)
    arch = inst.architecture.model_copy(update={"levels": levels})
    return Instance.model_validate({**inst.model_dump(mode="json", exclude_none=True),
                                    "architecture": arch.model_dump(mode="json", exclude_none=True)})


def fmt(v, spec: str = ",") -> str:
    return "-" if v is None else format(v, spec)


HEAD = ("| N | arch | layer | objective | status (gap) | energy (nJ) | latency (cycles) | MACs | DRAM words | "
        "MAC util. | stages fused | cascade | solve (s) |")


def table_row(n: int, arch: str, r: dict) -> str:
    gap = f"{r['status']}" + (f" ({100 * r['gap']:.1f} %)" if r["status"] != "OPTIMAL" and r["gap"] else "")
    nj = None if r["energy"] is None else r["energy"] / 1e6
    return (f"| {n} | {arch} | {r['kind']} | {r['objective']} | {gap} | {fmt(nj, ',.1f')} | {fmt(r['latency'])} | "
            f"{fmt(r['macs'])} | {fmt(r['dram'])} | {fmt(r['util'], '.3f')} | {fmt(r['fused'])} | "
            f"{r['variant'] or ''} | {r['wall']:.1f} |")


def comparison(args) -> list[str]:
    lines = [HEAD, "|" + "---|" * (HEAD.count("|") - 1)]
    ratios = ["| N | arch | attention ÷ butterfly energy (energy optima) | attention ÷ butterfly latency (latency "
              "optima) | both proven |", "|---|---|---|---|---|"]
    print(HEAD, flush=True)
    for arch in args.arch:
        for n in args.n:
            got = {}
            for kind, make in (("butterfly", butterfly_instance), ("attention", attention_instance)):
                inst = make(n, arch)
                for objective in args.objective:
                    r = got[kind, objective] = measure(kind, inst, objective, args.limit, args.deterministic_time)
                    line = table_row(n, arch, r)
                    lines.append(line)
                    print(line, flush=True)
            proven = all(r["status"] == "OPTIMAL" for r in got.values())
            ratios.append(f"| {n} | {arch} | {ratio(got, 'energy')} | {ratio(got, 'latency')} | "
                          f"{'yes' if proven else 'no'} |")
            print(ratios[-1], flush=True)
    print(PAPER)
    return lines + [""] + ratios + ["", PAPER]


def ratio(got: dict, objective: str) -> str:
    """attention ÷ butterfly at their `objective` optima; where either is not proven, the interval its proven bound
    and its best mapping allow (lowest: attention's bound over butterfly's mapping)."""
    a, b = got.get(("attention", objective)), got.get(("butterfly", objective))
    if not a or not b or a[objective] is None or b[objective] is None:
        return "-"
    lo = a["bound"] / b[objective]
    hi = a[objective] / b["bound"] if b["bound"] else float("inf")
    if a["status"] == b["status"] == "OPTIMAL":
        return f"{a[objective] / b[objective]:.2f}x"
    return f"{lo:.2f}x to {hi:.2f}x"


def buffer_study(args) -> list[str]:
    base = butterfly(512, hidden=16, radix=8, arch="dataflow-array")
    lines = ["| GLB words | CORE words | status | energy (nJ) | latency (cycles) | DRAM words | stages fused | "
             "solve (s) |", "|---|---|---|---|---|---|---|---|"]
    print(lines[0], flush=True)
    for words in args.buffers:
        inst = scaled_buffers(base, words)
        r = measure("butterfly", inst, "energy", args.limit, args.deterministic_time)
        nj = None if r["energy"] is None else r["energy"] / 1e6
        lines.append(f"| {words:,} | {max(8, words // 16):,} | {r['status']} | {fmt(nj, ',.2f')} | "
                     f"{fmt(r['latency'])} | {fmt(r['dram'])} | {fmt(r['fused'])} | {r['wall']:.1f} |")
        print(lines[-1], flush=True)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=SIZES)
    ap.add_argument("--arch", nargs="+", default=ARCH_NAMES)
    ap.add_argument("--objective", nargs="+", default=["energy", "latency"])
    ap.add_argument("--limit", type=float, default=120.0, help="wall seconds per solve")
    ap.add_argument("--deterministic-time", type=float, default=None, help="CP-SAT deterministic seconds per "
                    "solve instead of --limit (the same answer on a loaded machine)")
    ap.add_argument("--buffer-study", action="store_true")
    ap.add_argument("--buffers", type=int, nargs="+", default=[64, 256, 1024, 4096, 16384, 65536, 524288])
    ap.add_argument("--markdown", default=None, help="also write the table(s) to this Markdown file")
    args = ap.parse_args()
    lines = buffer_study(args) if args.buffer_study else comparison(args)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
