"""The side outputs of a search: trace records, CP-SAT's log, exported models. All flushed as they happen."""
from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Optional

from mapsolve.solver.trace import TraceWriter, file_hash, versions


class SearchOutputs:
    """Callbacks for `mapsolve.solver.solve` that write whatever the user asked for."""

    def __init__(self, instance_path: Path, inst, trace: Optional[Path], solver_log: Optional[Path],
                 export_model: Optional[Path], options: dict):
        self.t0 = time.perf_counter()
        self.trace = TraceWriter(trace) if trace else None
        self.log_fh: Optional[IO[str]] = open(solver_log, "w") if solver_log else None
        self.export = export_model
        if export_model is not None and not Path(export_model).parent.is_dir():
            raise OSError(f"--export-model: folder {Path(export_model).parent} does not exist")
        self.exported: list[str] = []
        self.sizes = {"variables": 0, "constraints": 0, "booleans": 0, "models": 0}
        if self.trace:
            from mapsolve.solver.search import segment_plans
            from mapsolve.model.variants import alternatives
            # counted, not built: building every model up front cost more than many searches (fusemax_bert_4k:
            # 15 s for 112 models), outside any time limit; the final record totals the models actually built
            plans = sum(len(segment_plans(alt)) for _, alt in alternatives(inst))
            self.trace.write({"type": "header", "wall": 0.0, "instance": inst.name,
                              "instance_hash": file_hash(instance_path), "options": options,
                              "versions": versions(), "einsums": len(inst.workload.einsums),
                              "model_size": {"models": plans}})

    def event(self, record: dict) -> None:
        if record.get("type") == "segment_start":
            for k in ("variables", "constraints", "booleans"):
                self.sizes[k] += record.get(k, 0)
            self.sizes["models"] += 1
        if self.trace:
            self.trace.write(record)

    def log(self, line: str) -> None:
        if self.log_fh:
            self.log_fh.write(line + "\n")
            self.log_fh.flush()

    def model(self, label: str, model, size: dict) -> None:
        if self.log_fh:
            self.log(f"#### model {label}: {size}")
        if self.export:
            safe = "".join(c if c.isalnum() or c in "+-@_" else "_" for c in label)
            path = f"{self.export}.{safe}.pb.txt"
            if model.export_to_file(path):
                self.exported.append(path)

    def close(self, res, extra: Optional[dict] = None) -> None:
        if self.trace:
            final = {"type": "final", "wall": round(time.perf_counter() - self.t0, 6),
                     "model_size": self.sizes, "exported_models": self.exported}
            if res is not None:
                segs = res.segments
                final.update({
                    "status": res.status, "objective": res.objective[0] if res.objective else None,
                    "best_bound": res.best_bound[0] if res.best_bound else None, "gap": res.gap,
                    "proof": res.status == "OPTIMAL", "energy_fj": res.energy_fj,
                    "latency_cycles": res.latency_cycles,
                    "conflicts": sum(s.conflicts for s in segs), "branches": sum(s.branches for s in segs),
                    "deterministic_time": sum(s.deterministic_time for s in segs),
                    "presolve": {k: sum(s.presolve.get(k, 0) for s in segs)
                                 for k in ("booleans", "integers", "fixed_booleans")},
                    "build_seconds": res.build_seconds, "search_seconds": res.solve_seconds,
                    "segments": {st: sum(1 for s in segs if s.status == st)
                                 for st in sorted({s.status for s in segs})},
                    "certificates": res.certificates, "energy_unit_fj": res.energy_unit_fj,
                })
            else:
                final["status"] = "ERROR"
            final.update(extra or {})
            self.trace.write(final)
            self.trace.close()
        if self.log_fh:
            self.log_fh.close()
