"""The worked example of docs/model.md §7: the evaluator must give exactly the figures the doc derives by hand.

The figures are the constants below. One test checks them against the evaluator (library and CLI), another
checks that §7 of the doc states the same figures (its counts table, the energy and latency lines), so the doc,
these constants and the evaluator cannot drift apart.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from mapsolve.model import evaluate, load_instance, load_mapping

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instances" / "doc_example.json"
MAPPING = ROOT / "instances" / "doc_example.mapping.json"
DOC = ROOT / "docs" / "model.md"

ENERGY_FJ = 552000
LATENCY_CYCLES = 80
UNIT_CYCLES = {"mac": 16}
UNIT_ENERGY_FJ = {"mac": 16000}
OPS = 32
LEVEL_CYCLES = {"DRAM": 80}          # GLB has unlimited bandwidth
LEVEL_ENERGY_FJ = {"DRAM": 400000, "GLB": 136000}
GLB_WORDS = 14                       # capacity required per instance (tiles A 2 + B 4 + Z 8)

COLUMNS = ["fills", "reads", "writes", "multicast", "reductions", "updates", "update_reads", "drains",
           "readbacks", "energy_fj"]
#: (level, tensor) -> the table row of docs/model.md §7.3, in COLUMNS order
COUNTS = {
    ("DRAM", "A"): [0, 8, 0, 0, 0, 0, 0, 0, 0, 80000],
    ("DRAM", "B"): [0, 16, 0, 0, 0, 0, 0, 0, 0, 160000],
    ("DRAM", "Z"): [0, 0, 16, 0, 0, 16, 0, 0, 0, 160000],
    ("GLB", "A"): [8, 32, 8, 0, 0, 0, 0, 0, 0, 40000],
    ("GLB", "B"): [16, 16, 16, 16, 0, 0, 0, 0, 0, 32000],
    ("GLB", "Z"): [0, 32, 32, 0, 0, 32, 16, 16, 0, 64000],
}
#: headers of the doc's table -> COLUMNS
HEADERS = {"fills": "fills", "reads": "reads", "writes": "writes", "multicast": "multicast",
           "reductions": "reductions", "updates": "updates", "update reads": "update_reads", "drains": "drains",
           "read-backs": "readbacks", "energy (fJ)": "energy_fj"}


def test_constants_are_consistent() -> None:
    assert sum(row[-1] for row in COUNTS.values()) + sum(UNIT_ENERGY_FJ.values()) == ENERGY_FJ
    for lv, e in LEVEL_ENERGY_FJ.items():
        assert sum(row[-1] for (level, _), row in COUNTS.items() if level == lv) == e
    assert LATENCY_CYCLES == max(*UNIT_CYCLES.values(), *LEVEL_CYCLES.values())


def test_evaluator_gives_the_doc_figures() -> None:
    res = evaluate(load_instance(INSTANCE), load_mapping(MAPPING))
    assert res.energy_fj == ENERGY_FJ
    assert res.latency_cycles == LATENCY_CYCLES
    got = {key: [*(asdict(c)[k] for k in COLUMNS[:-1]), res.level_energy_fj[key]] for key, c in res.counts.items()}
    assert got == COUNTS
    assert {u: c.cycles for u, c in res.units.items()} == UNIT_CYCLES
    assert {u: c.energy_fj for u, c in res.units.items()} == UNIT_ENERGY_FJ
    assert {u: c.ops for u, c in res.units.items()} == {"mac": OPS}
    [group] = res.groups
    assert group.level_cycles == LEVEL_CYCLES and group.unit_cycles == UNIT_CYCLES
    assert group.latency_cycles == LATENCY_CYCLES and group.bound_by == "level DRAM"
    assert res.capacity_required["GLB"] == GLB_WORDS


def test_cli_gives_the_doc_figures() -> None:
    proc = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", "evaluate", str(INSTANCE), str(MAPPING),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["energy_fj"] == ENERGY_FJ and out["latency_cycles"] == LATENCY_CYCLES
    levels = out["breakdown"]["levels"]
    assert {lv: entry["energy_fj"] for lv, entry in levels.items()} == LEVEL_ENERGY_FJ
    got = {(lv, t): [c[k] for k in COLUMNS] for lv, entry in levels.items() for t, c in entry["tensors"].items()}
    assert got == COUNTS
    assert out["breakdown"]["capacity_words"]["GLB"]["required"] == GLB_WORDS


def _section_7() -> str:
    text = DOC.read_text()
    start = text.index("## 7. Worked example")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_doc_states_the_same_figures() -> None:
    sec = _section_7()
    rows = [line for line in sec.splitlines() if line.startswith("| ")]
    header_at = next(i for i, line in enumerate(rows) if line.startswith("| level | tensor | fills"))
    header = [h.strip() for h in rows[header_at].strip("|").split("|")]
    assert header[:2] == ["level", "tensor"] and [HEADERS[h] for h in header[2:]] == COLUMNS
    table = {}
    for line in rows[header_at + 1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set(cells[0]) <= {"-"}:
            continue
        if len(cells) != len(header):
            break
        table[(cells[0], cells[1])] = [int(c) for c in cells[2:]]
    assert table == COUNTS
    assert f"**{ENERGY_FJ} fJ**" in sec
    assert f"**{LATENCY_CYCLES} cycles**" in sec
    for lv, e in LEVEL_ENERGY_FJ.items():
        assert re.search(rf"- {lv}: .*= {e} fJ`", sec), lv
    assert f"= {UNIT_ENERGY_FJ['mac']} fJ`" in sec and f"`ops = 4·4·2 = {OPS}`" in sec
    assert f"max({UNIT_CYCLES['mac']}, {LEVEL_CYCLES['DRAM']}) =" in sec
    assert f"= {GLB_WORDS}` words" in sec


def test_doc_shows_the_example_files() -> None:
    """The two JSON blocks of §7 are the instance (description omitted) and the mapping, as parsed."""
    blocks = re.findall(r"```json\n(.*?)```", _section_7(), flags=re.S)
    assert len(blocks) == 2
    instance = json.loads(INSTANCE.read_text())
    instance.pop("description")
    assert json.loads(blocks[0]) == instance
    assert json.loads(blocks[1]) == json.loads(MAPPING.read_text())


# §7.5: the same instance with the DRAM loops swapped, so Z's partial sums make a round trip through DRAM
READBACK_MAPPING = ROOT / "instances" / "doc_example_readback.mapping.json"
READBACK_ENERGY_FJ = 816000
READBACK_LATENCY_CYCLES = 128
READBACK_COLUMNS = ["reads", "writes", "update_reads", "drains", "readbacks", "energy_fj"]
READBACK_COUNTS = {
    ("DRAM", "A"): [8, 0, 0, 0, 0, 80000],
    ("DRAM", "B"): [8, 0, 0, 0, 0, 80000],
    ("DRAM", "Z"): [16, 32, 0, 0, 0, 480000],
    ("GLB", "A"): [32, 8, 0, 0, 0, 40000],
    ("GLB", "B"): [16, 8, 0, 0, 0, 24000],
    ("GLB", "Z"): [48, 48, 16, 32, 16, 96000],
}


def test_readback_example_matches_evaluator_and_doc() -> None:
    res = evaluate(load_instance(INSTANCE), load_mapping(READBACK_MAPPING))
    assert (res.energy_fj, res.latency_cycles) == (READBACK_ENERGY_FJ, READBACK_LATENCY_CYCLES)
    got = {key: [*(asdict(c)[k] for k in READBACK_COLUMNS[:-1]), res.level_energy_fj[key]]
           for key, c in res.counts.items()}
    assert got == READBACK_COUNTS
    sec = _section_7()[_section_7().index("### 7.5"):]
    sec = sec.split("### 7.6")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in sec.splitlines() if line.startswith("| ")]
    assert rows[0] == ["level", "tensor", "reads", "writes", "update reads", "drains", "read-backs", "energy (fJ)"]
    table = {(r[0], r[1]): [int(c) for c in r[2:]] for r in rows[1:]}
    assert table == READBACK_COUNTS
    assert f"**{READBACK_ENERGY_FJ} fJ**" in sec and f"**{READBACK_LATENCY_CYCLES} cycles**" in sec


def test_nested_example_matches_evaluator_simulator_and_doc() -> None:
    """docs/model.md §7.6: nested fusion (the key loop encloses QK and AV, not Z). The table's counts, the live
    words, energy and latency as the evaluator and the literal simulator give them, and as the doc states."""
    sys.path.insert(0, str(Path(__file__).parent))
    from simulator import simulate
    inst = load_instance(ROOT / "instances" / "tiny_nested.json")
    mapping = load_mapping(ROOT / "instances" / "tiny_nested.mapping.json")
    res = evaluate(inst, mapping)
    want = {("GLB", "S"): (24, 16), ("GLB", "O"): (20, 16), ("GLB", "Q"): (16, 4), ("GLB", "V"): (16, 16),
            ("DRAM", "Q"): (4, 0), ("DRAM", "V"): (16, 0), ("DRAM", "K"): (16, 0), ("DRAM", "WZ"): (8, 0),
            ("DRAM", "Y"): (4, 8)}
    for key, (reads, writes) in want.items():
        c = res.counts[key]
        assert (c.reads, c.writes) == (reads, writes), key
    assert res.capacity_required["GLB"] == 7
    assert (res.energy_fj, res.latency_cycles) == (5896000, 40)
    sim = simulate(inst, mapping)
    assert (sim.energy_fj, sim.latency_cycles) == (5896000, 40)
    assert all(sim.counts[k]["reads"] == r and sim.counts[k]["writes"] == w for k, (r, w) in want.items())
    text = DOC.read_text()
    section = text[text.index("### 7.6"):]
    assert "**5896000 fJ**" in section and "latency 40 cycles" in section
    assert "5504000 fJ against 5064000 fJ" in section


def test_online_example_matches_evaluator_simulator_and_doc() -> None:
    """docs/model.md §7.7: a recurrence (the running sum S) read running by C, all fused under the loop over r.
    The listed counts, energy and latency as the evaluator and the literal simulator give them, and as stated."""
    sys.path.insert(0, str(Path(__file__).parent))
    from simulator import simulate
    inst = load_instance(ROOT / "instances" / "tiny_online.json")
    mapping = load_mapping(ROOT / "instances" / "tiny_online.mapping.json")
    res = evaluate(inst, mapping)
    want = {("DRAM", "X"): (6, 0), ("GLB", "X"): (6, 6), ("GLB", "T"): (12, 6), ("GLB", "S"): (12, 6),
            ("GLB", "C"): (6, 6), ("DRAM", "C"): (0, 6)}
    for key, (reads, writes) in want.items():
        c = res.counts[key]
        assert (c.reads, c.writes) == (reads, writes), key
    assert res.counts[("GLB", "S")].update_reads == 0 and res.counts[("GLB", "S")].readbacks == 0
    assert (res.energy_fj, res.latency_cycles) == (198000, 18)
    sim = simulate(inst, mapping)
    assert (sim.energy_fj, sim.latency_cycles) == (198000, 18)
    assert all(sim.counts[k]["reads"] == r and sim.counts[k]["writes"] == w for k, (r, w) in want.items())
    section = DOC.read_text().split("### 7.7")[1]
    assert "**198000 fJ**" in section and "**18 cycles**" in section
