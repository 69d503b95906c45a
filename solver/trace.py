"""Solver traces: one record per event, flushed as written, so a killed run leaves a valid partial trace.

JSON Lines by default; CSV when the file name ends in `.csv` (fixed columns, the rest of a record as JSON in
`detail`). Record types (docs/traces.md): `header`, `segment_start`, `incumbent`, `bound`, `segment_end`,
`final`. `scope` is `segment` for one segment model's search, `total` for the whole cascade.
"""
from __future__ import annotations

import csv
import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import IO, Optional

CSV_COLUMNS = ["type", "wall", "deterministic_time", "scope", "segment", "objective", "best_bound", "gap",
               "energy_fj", "latency_cycles", "status", "detail"]


def versions() -> dict:
    def v(pkg: str) -> Optional[str]:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None
    return {"mapsolve": v("mapsolve"), "ortools": v("ortools"), "python": platform.python_version()}


def file_hash(path: str | Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


class TraceWriter:
    """Writes trace records; every record is flushed to the OS at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.csv = self.path.suffix.lower() == ".csv"
        self.fh: IO[str] = open(self.path, "w", newline="")
        self.writer = None
        if self.csv:
            self.writer = csv.DictWriter(self.fh, fieldnames=CSV_COLUMNS)
            self.writer.writeheader()
            self.fh.flush()

    def write(self, record: dict) -> None:
        if self.csv:
            row = {k: record.get(k) for k in CSV_COLUMNS if k != "detail"}
            rest = {k: v for k, v in record.items() if k not in CSV_COLUMNS}
            row["detail"] = json.dumps(rest) if rest else ""
            self.writer.writerow(row)
        else:
            self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def read_trace(path: str | Path) -> list[dict]:
    """Records of a JSONL or CSV trace (a partial last line of a killed run is ignored)."""
    path = Path(path)
    records: list[dict] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                rec = {k: _number(v) for k, v in row.items() if k != "detail" and v not in ("", None)}
                if row.get("detail"):
                    rec.update(json.loads(row["detail"]))
                records.append(rec)
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _number(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
