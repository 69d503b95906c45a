"""Sweeps on Ray (`mapsolve sweep --ray ADDRESS`): a real Ray head started by the fixture (`ray start --head`, the
way a cluster's head node is started), a small sweep solved on it as Ray tasks, and its table compared with the
local run's; `--ray local` (a Ray instance started for the run); resuming; one-line refusals.

Ray is in the `test` extra, so the README's test command runs these; without Ray installed they are skipped."""
from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from mapsolve.sweep.run import TIME_COLUMNS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SWEEP = f"""base: {ROOT / 'instances' / 'tiny_matmul.json'}
grid:
  architecture.levels.GLB.capacity_words: [16, 256]
  workload.ranks.N: [4, 8]
objectives: [energy, latency]
limits:
  deterministic_time: 5
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head node on a free port, in its own process group (`--block`), stopped at the end: `ray stop` would
    stop every Ray process of the user, a cluster of theirs included."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray")   # short: Ray's socket paths must stay under 108 characters
    ray_cli = Path(sys.executable).parent / "ray"
    log = Path(temp) / "start.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                                 "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    # The head is up when its port answers; start-up is bounded by a count of polls (a loaded machine is slow).
    for _ in range(1800):
        if _answers(port) or proc.poll() is not None:
            break
        time.sleep(0.1)
    if proc.poll() is not None or not _answers(port):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        # Ray itself cannot run here (a sandbox without what its raylet needs): an environment's limit, said
        # with Ray's own last words, not a failure of mapsolve's
        pytest.skip(f"ray start --head did not come up on port {port}: "
                    f"{' '.join(log.read_text().split()[-40:])}")
    yield f"127.0.0.1:{port}"
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:   # its clean shut-down can take half a minute on a loaded machine
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # the raylet, GCS and workers left in the group
    except ProcessLookupError:
        pass
    proc.wait()


def _run(*args):
    return subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "sweep", *map(str, args), "--quiet",
                           "--no-plot"], capture_output=True, text=True)


def _table(folder: Path) -> list[dict]:
    with (folder / "results.csv").open() as fh:
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def local_table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "s.yaml").write_text(SWEEP)
    cp = _run(folder / "s.yaml", "-o", folder / "local", "--jobs", "1")
    assert cp.returncode == 0, cp.stderr
    rows = _table(folder / "local")
    assert len(rows) == 8 and {r["status"] for r in rows} == {"OPTIMAL"}
    return folder, rows


def test_a_sweep_on_a_ray_cluster_gives_the_local_table_and_resumes(ray_head, local_table):
    folder, rows = local_table
    out = folder / "on_ray"
    cp = _run(folder / "s.yaml", "-o", out, "--ray", ray_head)
    assert cp.returncode == 0, cp.stderr
    assert _table(out) == rows
    files = sorted((out / "points").glob("*.json"))
    assert len(files) == 8
    for f in files[:3]:   # a sweep killed part way: only the missing points go to the cluster again
        f.unlink()
    cp = _run(folder / "s.yaml", "-o", out, "--ray", ray_head)
    assert cp.returncode == 0, cp.stderr
    assert "5 finished before, skipped" in cp.stdout
    assert _table(out) == rows


def test_ray_local_starts_its_own_instance_with_the_same_table(ray_head, local_table):
    """Beside the running head (`ray_head`, which also skips this where Ray cannot start): a new instance."""
    folder, rows = local_table
    cp = _run(folder / "s.yaml", "-o", folder / "ray_local", "--ray", "local", "--jobs", "2")
    assert cp.returncode == 0, cp.stderr
    assert _table(folder / "ray_local") == rows


@pytest.mark.parametrize("address, says", [("nohost", "give HOST:PORT"),
                                           (f"127.0.0.1:{_free_port()}", "nothing answers there"),
                                           ("  ", "give a cluster address")])
def test_a_bad_or_dead_address_is_one_line(tmp_path, address, says):
    (tmp_path / "s.yaml").write_text(SWEEP)
    cp = _run(tmp_path / "s.yaml", "-o", tmp_path / "out", "--ray", address)
    assert cp.returncode == 2
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in cp.stderr


@pytest.mark.parametrize("where", ["ray", "pool"])
def test_an_interrupt_mid_sweep_exits_130_and_keeps_the_rows(ray_head, tmp_path, where):
    """SIGINT once the second row is kept (MAPSOLVE_INTERRUPT_AT, a real signal to the process): exit 130 with one
    line, the finished points kept and nothing else; a re-run finishes the sweep with the local table's rows."""
    (tmp_path / "s.yaml").write_text(SWEEP)
    out = tmp_path / "out"
    how = ["--ray", ray_head] if where == "ray" else ["--jobs", "2"]
    cp = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "sweep", str(tmp_path / "s.yaml"), "-o",
                         str(out), "--quiet", "--no-plot", *how], capture_output=True, text=True,
                        env={**os.environ, "MAPSOLVE_INTERRUPT_AT": "sweep_row:2"})
    assert cp.returncode == 130, cp.stderr
    assert cp.stderr.strip().splitlines() == [f"mapsolve: error: interrupted: every finished point is kept in "
                                              f"{out / 'points'}; run again to resume"]
    kept = len(list((out / "points").glob("*.json")))
    assert 2 <= kept < 8 and not (out / "results.csv").exists()
    cp = _run(tmp_path / "s.yaml", "-o", out, *how)
    assert cp.returncode == 0 and f"{kept} finished before, skipped" in cp.stdout, cp.stderr
