"""mapsolve's counts against timeloop-model's on the `mapsolve export timeloop` files of a mapping.

    python bench/bench_timeloop.py INSTANCE MAPPING [--timeloop-model PATH] [--work DIR] [--timeout S]

timeloop-model is not a dependency: give its path (or set TIMELOOP_MODEL, or have it on PATH; its shared library where the loader finds
it, e.g. LD_LIBRARY_PATH). Prints the operation counts, the energies, and per (level, tensor) the reads, fills
and updates of both tools in Timeloop's terms (docs/interop.md, "What agrees"), marking each row that differs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mapsolve.interop.timeloop_export import export
from mapsolve.interop.timeloop_stats import mapsolve_as_timeloop, parse_stats, timeloop_totals
from mapsolve.model import analyze, load_instance, load_mapping
from mapsolve.model.units import element_fj
from mapsolve.model.variants import select


def run(instance: Path, mapping: Path, binary: str, work: Path, timeout: float) -> int:
    inst, mp = load_instance(instance), load_mapping(mapping)
    files, exports = export(inst, mp)
    for name, text in files.items():
        (work / name).write_text(text)
    stats = {}
    for ex in exports:
        d = work / f"run-{Path(ex.mapping_file).stem}"
        d.mkdir(exist_ok=True)
        args = [str((work / f).resolve()) for f in (ex.arch_file, ex.problem_file, ex.mapping_file, ex.ert_file)]
        try:
            subprocess.run([binary, *args], cwd=d, capture_output=True, check=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"{ex.einsum}: timeloop-model did not finish in {timeout:g} s")
            return 1
        except subprocess.CalledProcessError as exc:
            print(f"{ex.einsum}: timeloop-model failed (exit {exc.returncode}): {exc.stdout.decode()[-300:]}")
            return 1
        stats[ex.einsum] = parse_stats((d / "timeloop-model.stats.txt").read_text())
    result = analyze(inst, mp)
    computes, tl = timeloop_totals(exports, stats)
    ms = mapsolve_as_timeloop(result)
    ops = sum(u.ops for u in result.units.values())
    print(f"{instance.name} + {mapping.name}: {len(exports)} einsums")
    print(f"operations: mapsolve {ops:,}  timeloop {computes:,}" + ("" if ops == computes else "  DIFFER"))
    tl_fj = sum(s.energy_fj for s in stats.values())
    plain = select(inst, mp.variant)
    levels = {lv.name: lv for lv in plain.architecture.levels}
    wb = plain.workload.word_bits
    drain_fj = sum(c.drains * element_fj(levels[lv], "r", wb, wb) for (lv, _), c in result.counts.items())
    print(f"energy: mapsolve {result.energy_fj:,} fJ, less its drain reads at word_bits "
          f"{result.energy_fj - drain_fj:,} fJ; timeloop {tl_fj:,.0f} fJ")
    print(f"{'level':8} {'tensor':10} {'mapsolve reads/fills/updates':>32} {'timeloop reads/fills/updates':>32}")
    differ = 0
    for key in sorted(set(ms) | set(tl)):
        a = ms.get(key, {"reads": 0, "fills": 0, "updates": 0})
        b = tl.get(key, {"reads": 0, "fills": 0, "updates": 0})
        same = a == b
        differ += not same
        fmt = lambda c: f"{c['reads']:,}/{c['fills']:,}/{c['updates']:,}"
        print(f"{key[0]:8} {key[1]:10} {fmt(a):>32} {fmt(b):>32}{'' if same else '  DIFFER'}")
    print(f"{differ} of {len(set(ms) | set(tl))} rows differ")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("instance", type=Path)
    ap.add_argument("mapping", type=Path)
    ap.add_argument("--timeloop-model", default=os.environ.get("TIMELOOP_MODEL") or shutil.which("timeloop-model"),
                    help="the binary (default: $TIMELOOP_MODEL, else timeloop-model on PATH)")
    ap.add_argument("--work", type=Path, help="folder for the files and Timeloop's outputs (default: a temporary one)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per timeloop-model run")
    a = ap.parse_args()
    if not a.timeloop_model:
        print("timeloop-model not found: give --timeloop-model PATH", file=sys.stderr)
        return 2
    if a.work:
        a.work.mkdir(parents=True, exist_ok=True)
        return run(a.instance, a.mapping, a.timeloop_model, a.work, a.timeout)
    with tempfile.TemporaryDirectory() as tmp:
        return run(a.instance, a.mapping, a.timeloop_model, Path(tmp), a.timeout)


if __name__ == "__main__":
    sys.exit(main())
