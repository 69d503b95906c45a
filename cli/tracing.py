"""The side outputs of a search: trace records, CP-SAT's log, exported models. All flushed as they happen."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

from mapsolve.solver.trace import TraceWriter, file_hash, versions


class SearchOutputs:
    """Callbacks for `mapsolve.solver.solve` that write whatever the user asked for."""

    def __init__(self, instance_path: Path, inst, trace: Optional[Path], solver_log: Optional[Path],
                 export_model: Optional[Path], options: dict):
        self.t0 = time.perf_counter()
        self.paths = {"--trace": trace, "--solver-log": solver_log, "--export-model": export_model}
        #: flag -> why that output stopped (a full disk mid-search): the search goes on, the result is still
        #: printed, and the CLI names the flag once everything else is written
        self.failures: dict[str, str] = {}
        self.records = 0
        self.trace_bytes = 0   # the trace file's size after its last whole record
        self.trace = self.log_fh = None
        self.export = export_model
        self.exported: list[str] = []
        self.sizes = {"variables": 0, "constraints": 0, "booleans": 0, "models": 0}
        self._guard("--trace", lambda: setattr(self, "trace", TraceWriter(trace) if trace else None))
        self._guard("--solver-log", lambda: setattr(self, "log_fh", open(solver_log, "w") if solver_log else None))
        if self.trace:
            from mapsolve.solver.search import plan_count
            # counted, neither built nor listed: building every model up front cost more than many searches
            # (fusemax_bert_4k: 15 s for 112 models), and a 2,000-Einsum chain has 4 million plans; the final
            # record totals the models actually built
            plans = plan_count(inst)
            self._write_trace({"type": "header", "wall": 0.0, "instance": inst.name,
                               "instance_hash": file_hash(instance_path), "options": options,
                               "versions": versions(), "einsums": len(inst.workload.einsums),
                               "model_size": {"models": plans}})

    def _guard(self, flag: str, write) -> bool:
        """Run `write`; on an OSError remember it for `flag` and stop that output (True when it worked)."""
        if flag in self.failures:
            return False
        try:
            write()
            return True
        except OSError as exc:
            self.failures[flag] = f"{self.paths[flag]}: cannot write: {exc.strerror or exc}"
            self._drop(flag)
            return False

    def _drop(self, flag: str) -> None:
        """Stop writing the output of `flag`. A trace is cut back to its last whole record (a full disk can leave
        one half written), so it stays valid JSON Lines / CSV; a log keeps what was flushed."""
        path = self.trace.path if flag == "--trace" and self.trace else None
        fh = self.trace.fh if path is not None else self.log_fh if flag == "--solver-log" else None
        if flag == "--trace":
            self.trace = None
        elif flag == "--solver-log":
            self.log_fh = None
        for step in (lambda: fh is not None and fh.close(),
                     lambda: path is not None and os.truncate(path, self.trace_bytes)):
            try:
                step()
            except OSError:
                pass

    def _write_trace(self, record: dict) -> None:
        if self.trace and self._guard("--trace", lambda: self.trace.write(record)):
            self.records += 1
            self.trace_bytes = self.trace.fh.tell()

    def event(self, record: dict) -> None:
        if record.get("type") == "segment_start":
            for k in ("variables", "constraints", "booleans"):
                self.sizes[k] += record.get(k, 0)
            self.sizes["models"] += 1
        self._write_trace(record)

    def log(self, line: str) -> None:
        if self.log_fh:
            self._guard("--solver-log", lambda: (self.log_fh.write(line + "\n"), self.log_fh.flush()))

    def model(self, label: str, model, size: dict) -> None:
        if self.log_fh:
            self.log(f"#### model {label}: {size}")
        if self.export:
            safe = "".join(c if c.isalnum() or c in "+-@_" else "_" for c in label)
            path = f"{self.export}.{safe}.pb.txt"
            if "--export-model" in self.failures:
                return
            if model.export_to_file(path) and Path(path).is_file() and Path(path).stat().st_size > 0:
                self.exported.append(path)
            else:   # CP-SAT says only False (or leaves an empty file on a full disk)
                Path(path).unlink(missing_ok=True)
                self.failures["--export-model"] = f"{path}: CP-SAT could not write the model (disk full?)"

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
            self._write_trace(final)
            self._guard("--trace", lambda: self.trace.close() if self.trace else None)
        if self.log_fh:
            self._guard("--solver-log", self.log_fh.close)

    def failure_line(self) -> Optional[str]:
        """One line naming every output that stopped, or None."""
        if not self.failures:
            return None
        return "; ".join(f"{flag} {why}" + (f" (the trace stops after {self.records} whole records)"
                                             if flag == "--trace" else "") for flag, why in self.failures.items())
