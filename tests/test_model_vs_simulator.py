"""The closed-form evaluator (mapsolve.model) against the literal loop-nest simulator (tests/simulator.py).

Property test: for random small instances and random mappings (tests/strategies.py), either both sides reject
the mapping as fusion across a reduction, or every count, the ops, the capacity requirement, energy and latency
agree exactly. Plus hand-checked regression cases whose numbers were worked out by hand from docs/model.md, and
every saved case in tests/cases/*.json.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).parent))

from mapsolve.model import MappingError, analyze  # noqa: E402
from mapsolve.model.spec import Instance, Mapping  # noqa: E402
from simulator import COUNTERS, FusionAcrossReduction, simulate  # noqa: E402
from strategies import butterfly_cases, cases, online_cases, readback_cases, renamings  # noqa: E402

CASES = Path(__file__).parent / "cases"


def case_json(inst: Instance, mapping: Mapping) -> str:
    return json.dumps({"instance": inst.model_dump(mode="json", exclude_defaults=True),
                       "mapping": mapping.model_dump(mode="json", exclude_defaults=True)}, indent=1)


def mismatches(inst: Instance, mapping: Mapping) -> list[str]:
    """Every difference between the evaluator and the simulator (empty when they agree)."""
    try:
        sim = simulate(inst, mapping)
    except FusionAcrossReduction as err:
        try:
            analyze(inst, mapping)
        except MappingError:
            return []
        return [f"simulator: fusion across a reduction ({err}); evaluator accepted the mapping"]
    try:
        res = analyze(inst, mapping)
    except MappingError as err:
        return [f"evaluator raised MappingError ({err}); the simulator ran the mapping"]
    out = []
    for key in sorted(set(sim.counts) | set(res.counts)):
        s = sim.counts.get(key, dict.fromkeys(COUNTERS, 0))
        r = asdict(res.counts[key]) if key in res.counts else dict.fromkeys(COUNTERS, 0)
        for c in COUNTERS:
            if s[c] != r[c]:
                out.append(f"{key[0]}/{key[1]} {c}: simulator {s[c]}, evaluator {r[c]}")
    for u in sorted(set(sim.unit_ops) | set(res.units)):
        ru = res.units.get(u)
        for what, sv, rv in (("ops", sim.unit_ops.get(u, 0), ru.ops if ru else 0),
                             ("cycles", sim.unit_cycles.get(u, 0), ru.cycles if ru else 0),
                             ("energy_fj", sim.unit_energy_fj.get(u, 0), ru.energy_fj if ru else 0)):
            if sv != rv:
                out.append(f"unit {u} {what}: simulator {sv}, evaluator {rv}")
    for lv in inst.architecture.levels:
        sv, rv = sim.peak_bits.get(lv.name, 0), res.capacity_bits_required.get(lv.name, 0)
        if sv != rv:
            out.append(f"capacity {lv.name}: simulator peak {sv} bits, evaluator {rv}")
    if len(sim.groups) != len(res.groups):
        out.append(f"groups: simulator {len(sim.groups)}, evaluator {len(res.groups)}")
    else:
        for sg, rg in zip(sim.groups, res.groups):
            if sg.einsums != list(rg.einsums):
                out.append(f"group einsums: simulator {sg.einsums}, evaluator {rg.einsums}")
            for u in sorted(set(sg.unit_cycles) | set(rg.unit_cycles)):
                if sg.unit_cycles.get(u, 0) != rg.unit_cycles.get(u, 0):
                    out.append(f"group {sg.einsums} unit {u} cycles: simulator {sg.unit_cycles.get(u, 0)}, "
                               f"evaluator {rg.unit_cycles.get(u, 0)}")
            for lv in sorted(set(sg.level_cycles) | set(rg.level_cycles)):
                if sg.level_cycles.get(lv, 0) != rg.level_cycles.get(lv, 0):
                    out.append(f"group {sg.einsums} level {lv} cycles: simulator {sg.level_cycles.get(lv, 0)}, "
                               f"evaluator {rg.level_cycles.get(lv, 0)}")
            if sg.latency_cycles != rg.latency_cycles:
                out.append(f"group {sg.einsums} latency: simulator {sg.latency_cycles} (units {sg.unit_cycles}, "
                           f"levels {sg.level_cycles}), evaluator {rg.latency_cycles} (units {rg.unit_cycles}, "
                           f"levels {rg.level_cycles})")
    if sim.energy_fj != res.energy_fj:
        out.append(f"energy_fj: simulator {sim.energy_fj}, evaluator {res.energy_fj}")
    if sim.latency_cycles != res.latency_cycles:
        out.append(f"latency_cycles: simulator {sim.latency_cycles}, evaluator {res.latency_cycles}")
    return out


def check(inst: Instance, mapping: Mapping) -> None:
    diff = mismatches(inst, mapping)
    assert not diff, "\n".join(diff[:40]) + "\n\ncase:\n" + case_json(inst, mapping)


# --------------------------------------------------------------------------------------------------------------
# Property test
# --------------------------------------------------------------------------------------------------------------
@settings(max_examples=600, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_evaluator_matches_simulator(case):
    inst, mapping = case
    check(inst, mapping)


@settings(max_examples=200, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases(rename=False).flatmap(lambda c: renamings(*c).map(lambda r: (c, r))))
def test_renaming_ranks_changes_no_count(pair):
    """An Einsum naming its ranks otherwise (every tensor it shares becomes a view, shared loops get renames) is
    the same problem: the evaluator gives the same counts, energy and latency (or rejects both), and the simulator
    agrees with it on the renamed case."""
    (inst, mapping), (inst2, mapping2) = pair
    try:
        res = analyze(inst, mapping)
    except MappingError:
        with pytest.raises(MappingError):
            analyze(inst2, mapping2)
        return
    res2 = analyze(inst2, mapping2)
    assert res2.to_json() == res.to_json(), case_json(inst2, mapping2)
    check(inst2, mapping2)


@settings(max_examples=150, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(readback_cases())
def test_evaluator_matches_simulator_on_revisited_outputs(case):
    """Read-back and accumulate cases generated on purpose (the random mappings above rarely revisit an output
    below DRAM): every case revisits Z at some kept level, so read-backs or parent accumulation must show."""
    inst, mapping = case
    check(inst, mapping)
    res = analyze(inst, mapping)
    assert any(c.readbacks or c.drains > 0 and c.updates > c.update_reads
               for (lv, t), c in res.counts.items() if t == "Z" and lv != "DRAM")


# --------------------------------------------------------------------------------------------------------------
# Hand-checked cases
# --------------------------------------------------------------------------------------------------------------
MATMUL = {"ranks": {"m": 2, "n": 2, "k": 2}, "word_bits": 16,
          "einsums": [{"name": "MM", "op": "mac", "output": {"tensor": "Z", "ranks": ["m", "n"]},
                       "inputs": [{"tensor": "A", "ranks": ["m", "k"]}, {"tensor": "B", "ranks": ["k", "n"]}]}]}


def two_level(unit_mesh=None, dram_bw=None, buf_bw=None) -> dict:
    return {"levels": [{"name": "DRAM", "read_pj": "1", "write_pj": "2", **({"bandwidth": dram_bw} if dram_bw else {})},
                       {"name": "Buf", "read_pj": "0.1", "write_pj": "0.2", "capacity_words": 100,
                        **({"bandwidth": buf_bw} if buf_bw else {})}],
            "compute_units": [{"name": "U", "mesh": unit_mesh or {}, "ops": {"mac": {"energy_pj": "0.5"}}}]}


def matmul_mapping(dram_t, buf_t, buf_s=(), buf_keep=("A", "B", "Z")) -> dict:
    return {"einsums": [{"einsum": "MM", "compute_unit": "U", "levels": [
        {"level": "DRAM", "keep": ["A", "B", "Z"], "temporal": [{"rank": r, "factor": f} for r, f in dram_t]},
        {"level": "Buf", "keep": list(buf_keep), "temporal": [{"rank": r, "factor": f} for r, f in buf_t],
         "spatial": [{"rank": r, "factor": f, "axis": a} for r, f, a in buf_s]}]}]}


def counts(res, level, tensor) -> dict:
    return asdict(res.counts[(level, tensor)])


def sim_counts(sim, level, tensor) -> dict:
    return sim.counts[(level, tensor)]


def both(inst, mapping):
    """Simulator and evaluator results, after checking they agree."""
    check(inst, mapping)
    return simulate(inst, mapping), analyze(inst, mapping)


def test_two_level_matmul_by_hand():
    # DRAM loops m:2 (outer), n:2; Buf loop k:2. Buf tiles: A 2 words (reload on every m: R=2), B 2 words (R=4),
    # Z 1 word (R=4, Rrel=4: no read-back). Unit: 8 ops.
    inst = Instance.model_validate({"name": "mm", "workload": MATMUL,
                                    "architecture": two_level(dram_bw="1/2", buf_bw="4")})
    m = Mapping.model_validate(matmul_mapping([("m", 2), ("n", 2)], [("k", 2)]))
    sim, res = both(inst, m)
    for c in (sim_counts(sim, "Buf", "A"), counts(res, "Buf", "A")):
        assert (c["fills"], c["writes"], c["reads"]) == (4, 4, 8)
    for c in (sim_counts(sim, "Buf", "B"), counts(res, "Buf", "B")):
        assert (c["fills"], c["writes"], c["reads"]) == (8, 8, 8)
    for c in (sim_counts(sim, "Buf", "Z"), counts(res, "Buf", "Z")):
        assert (c["updates"], c["update_reads"], c["drains"], c["readbacks"], c["reads"], c["writes"]) == \
               (8, 4, 4, 0, 8, 8)
    for c in (sim_counts(sim, "DRAM", "Z"), counts(res, "DRAM", "Z")):
        assert (c["updates"], c["update_reads"], c["writes"], c["reads"]) == (4, 0, 4, 0)
    assert counts(res, "DRAM", "A")["reads"] == 4 and counts(res, "DRAM", "B")["reads"] == 8
    # energy: DRAM 12 reads x 1000 + 4 writes x 2000; Buf 24 reads x 100 + 20 writes x 200; 8 ops x 500
    assert sim.energy_fj == res.energy_fj == 12000 + 8000 + 2400 + 4000 + 4000
    # latency: 8 steps; DRAM 16 words at 1/2 -> 32 cycles; Buf 44 words at 4 -> 11 cycles
    assert sim.latency_cycles == res.latency_cycles == 32
    assert sim.peak["Buf"] == res.capacity_required["Buf"] == 5


@pytest.mark.parametrize("ports,cycles", [({"bandwidth": "1"}, 12), ({"read_bandwidth": "1", "write_bandwidth": "1/4"}, 16),
                                          ({"read_bandwidth": "2", "write_bandwidth": "1"}, 4),
                                          ({"read_bandwidth": "1/2"}, 16), ({"write_bandwidth": "1/3"}, 12)])
def test_read_and_write_ports_by_hand(ports, cycles):
    # Everything at Buf: DRAM reads A and B once (8 words) and writes Z once (4 words). One port moves all 12
    # words; separate ports move 8 and 4 at their own rates and the slower one sets the time (an omitted port is
    # unlimited).
    arch = two_level()
    arch["levels"][0].update(ports)
    inst = Instance.model_validate({"name": "ports", "workload": MATMUL, "architecture": arch})
    m = Mapping.model_validate(matmul_mapping([], [("m", 2), ("n", 2), ("k", 2)]))
    sim, res = both(inst, m)
    assert res.groups[0].level_cycles["DRAM"] == sim.groups[0].level_cycles["DRAM"] == cycles
    assert res.latency_cycles == sim.latency_cycles == max(cycles, 8)


def test_bandwidth_and_ports_together_are_refused():
    arch = two_level()
    arch["levels"][0].update({"bandwidth": "1", "read_bandwidth": "2"})
    with pytest.raises(ValueError, match="not both"):
        Instance.model_validate({"name": "ports", "workload": MATMUL, "architecture": arch})


@pytest.mark.parametrize("multicast", [True, False])
def test_multicast_by_hand(multicast):
    # n spread over 2 units: A[m,k] does not depend on n -> one Buf read feeds both units when multicast is allowed.
    mesh = {"x": 2, "multicast": multicast}
    inst = Instance.model_validate({"name": "mc", "workload": MATMUL, "architecture": two_level(unit_mesh=mesh)})
    m = Mapping.model_validate(matmul_mapping([], [("m", 2), ("k", 2)], [("n", 2, "x")]))
    sim, res = both(inst, m)
    want = (4, 4) if multicast else (8, 0)
    for c in (sim_counts(sim, "Buf", "A"), counts(res, "Buf", "A")):
        assert (c["reads"], c["multicast"]) == want
    for c in (sim_counts(sim, "Buf", "B"), counts(res, "Buf", "B")):
        assert (c["reads"], c["multicast"], c["fills"]) == (8, 0, 4)


@pytest.mark.parametrize("reduction", [True, False])
def test_spatial_reduction_by_hand(reduction):
    # k spread over 2 units: the two partial products of Z[m,n] are summed in the network when allowed.
    mesh = {"x": 2, "reduction": reduction}
    inst = Instance.model_validate({"name": "rd", "workload": MATMUL, "architecture": two_level(unit_mesh=mesh)})
    m = Mapping.model_validate(matmul_mapping([], [("m", 2), ("n", 2)], [("k", 2, "x")]))
    sim, res = both(inst, m)
    want = (4, 4, 0) if reduction else (8, 0, 4)
    for c in (sim_counts(sim, "Buf", "Z"), counts(res, "Buf", "Z")):
        assert (c["updates"], c["reductions"], c["update_reads"]) == want


def test_partial_sum_readback_by_hand():
    # DRAM loops k:2 (outer), m:2; Buf loop n:2. The Z tile (2 words) is resident 4 times but only 2 are first
    # visits: 8 drains, 4 read-backs. DRAM serves the 4 read-backs and sees 8 updates: 4 first writes and 4 drains
    # that already carry the partial sum read back, so they are plain writes too (no update reads: reading the old
    # value again would count it twice).
    inst = Instance.model_validate({"name": "rb", "workload": MATMUL, "architecture": two_level()})
    m = Mapping.model_validate(matmul_mapping([("k", 2), ("m", 2)], [("n", 2)]))
    sim, res = both(inst, m)
    for c in (sim_counts(sim, "Buf", "Z"), counts(res, "Buf", "Z")):
        assert (c["drains"], c["readbacks"], c["fills"], c["updates"], c["update_reads"]) == (8, 4, 4, 8, 4)
        assert (c["reads"], c["writes"]) == (12, 12)
    for c in (sim_counts(sim, "DRAM", "Z"), counts(res, "DRAM", "Z")):
        assert (c["updates"], c["update_reads"], c["reads"], c["writes"]) == (8, 0, 4, 8)
    for c in (sim_counts(sim, "Buf", "A"), counts(res, "Buf", "A")):
        assert c["fills"] == 4
    for c in (sim_counts(sim, "Buf", "B"), counts(res, "Buf", "B")):
        assert c["fills"] == 4


@pytest.mark.parametrize("reduction", [True, False])
def test_partial_sums_accumulated_by_parent_by_hand(reduction):
    # k:4 is split 2 spatially over two Buf instances (both hold the same Z elements) and 2 temporally outside
    # m:2 at DRAM, so each Buf residency of Z is revisited. Read-back cannot be right here (both instances would
    # fetch the same partial sum), so every Buf residency starts from zero and DRAM accumulates the drains:
    # 2 instances x 2 words x 4 residencies = 16 drains, no read-backs, no update reads at Buf (each residency's
    # 16 updates arrive, each the first of its element-residency). DRAM receives 16 / 2 = 8 updates
    # through the reducing mesh (16 without), 4 of them first writes of Z's 4 elements.
    wl = {"ranks": {"m": 2, "n": 2, "k": 4}, "einsums": MATMUL["einsums"]}
    arch = {"levels": [{"name": "DRAM", "read_pj": "1", "write_pj": "2"},
                       {"name": "Buf", "read_pj": "0.1", "write_pj": "0.2", "capacity_words": 100,
                        "mesh": {"x": 2, "reduction": reduction}}],
            "compute_units": [{"name": "U", "ops": {"mac": {"energy_pj": "0.5"}}}]}
    inst = Instance.model_validate({"name": "acc", "workload": wl, "architecture": arch})
    m = Mapping.model_validate({"einsums": [{"einsum": "MM", "compute_unit": "U", "levels": [
        {"level": "DRAM", "keep": ["A", "B", "Z"], "temporal": [{"rank": "k", "factor": 2}, {"rank": "m", "factor": 2}],
         "spatial": [{"rank": "k", "factor": 2, "axis": "x"}]},
        {"level": "Buf", "keep": ["A", "B", "Z"], "temporal": [{"rank": "n", "factor": 2}]}]}]})
    sim, res = both(inst, m)
    for c in (sim_counts(sim, "Buf", "Z"), counts(res, "Buf", "Z")):
        assert (c["drains"], c["readbacks"], c["updates"], c["update_reads"]) == (16, 0, 16, 0)
    arriving = 8 if reduction else 16
    for c in (sim_counts(sim, "DRAM", "Z"), counts(res, "DRAM", "Z")):
        assert (c["updates"], c["update_reads"], c["reductions"]) == (arriving, arriving - 4, 16 - arriving)
        assert (c["reads"], c["writes"]) == (arriving - 4, arriving)


SOFTMAX3 = {"ranks": {"m": 4, "p": 2}, "word_bits": 16, "einsums": [
    {"name": "MX", "op": "max", "output": {"tensor": "MX", "ranks": ["p"]},
     "inputs": [{"tensor": "QK", "ranks": ["m", "p"]}]},
    {"name": "SN", "op": "exp", "output": {"tensor": "SN", "ranks": ["m", "p"]},
     "inputs": [{"tensor": "QK", "ranks": ["m", "p"]}, {"tensor": "MX", "ranks": ["p"]}]},
    {"name": "SD", "op": "add", "output": {"tensor": "SD", "ranks": ["p"]},
     "inputs": [{"tensor": "SN", "ranks": ["m", "p"]}]}]}


def softmax3(shared_rank: str):
    arch = {"levels": [{"name": "DRAM", "read_pj": "1", "write_pj": "1"},
                       {"name": "GLB", "read_pj": "0.125", "write_pj": "0.25", "capacity_words": 64}],
            "compute_units": [{"name": "U", "ops": {op: {"energy_pj": "0.01"} for op in ("max", "exp", "add")}}]}
    other = "m" if shared_rank == "p" else "p"
    glb = {"MX": ["QK", "MX"], "SN": ["SN", "QK", "MX"], "SD": ["SD", "SN"]}
    dram = {"MX": ["QK"], "SN": ["QK"], "SD": ["SD"]}
    mapping = {"einsums": [{"einsum": e, "compute_unit": "U", "levels": [
        {"level": "DRAM", "keep": dram[e]},
        {"level": "GLB", "keep": glb[e], "temporal": [{"rank": other, "factor": SOFTMAX3["ranks"][other]}]}]}
        for e in ("MX", "SN", "SD")],
        "groups": [{"einsums": ["MX", "SN", "SD"], "fusion_level": "GLB",
                    "shared_loops": [{"level": "DRAM", "rank": shared_rank,
                                      "factor": SOFTMAX3["ranks"][shared_rank]}]}]}
    return (Instance.model_validate({"name": "sm", "workload": SOFTMAX3, "architecture": arch}),
            Mapping.model_validate(mapping))


def test_fused_softmax_by_hand():
    # Shared loop over query rows p:2, each Einsum loops m:4 at GLB. QK is filled once for the group (tile 4 words,
    # refetched per p) although MX and SN both read it; MX and SN never reach DRAM; SD drains once per element.
    inst, m = softmax3("p")
    sim, res = both(inst, m)
    for c in (sim_counts(sim, "GLB", "QK"), counts(res, "GLB", "QK")):
        assert (c["fills"], c["reads"]) == (8, 16)
    for c in (sim_counts(sim, "GLB", "MX"), counts(res, "GLB", "MX")):
        assert (c["updates"], c["update_reads"], c["reads"], c["drains"]) == (8, 6, 14, 0)
    for c in (sim_counts(sim, "GLB", "SN"), counts(res, "GLB", "SN")):
        assert (c["updates"], c["update_reads"], c["reads"]) == (8, 0, 8)
    for c in (sim_counts(sim, "GLB", "SD"), counts(res, "GLB", "SD")):
        assert (c["updates"], c["update_reads"], c["drains"], c["reads"]) == (8, 6, 2, 8)
    for c in (sim_counts(sim, "DRAM", "SD"), counts(res, "DRAM", "SD")):
        assert (c["updates"], c["writes"], c["update_reads"]) == (2, 2, 0)
    for t in ("MX", "SN"):   # fused intermediates never reach DRAM
        assert ("DRAM", t) not in sim.counts
        assert ("DRAM", t) not in res.counts or not any(asdict(res.counts[("DRAM", t)]).values())
    assert sim.peak["GLB"] == res.capacity_required["GLB"] == 4 + 1 + 4 + 1
    assert sim.steps == {"MX": 8, "SN": 8, "SD": 8}


def test_flush_below_fusion_level_by_hand():
    # A: Y[m,n] = exp(X[m,n]); B: O[n] = sum_m Y[m,n]; fused at GLB under a shared loop over m (valid: O is not
    # consumed in the group). B's Reg tile of O (n:2) is flushed after each of the 2 runs: 4 drains, and the second
    # run reads back the 2 partial sums; at GLB the O tile persists across the shared loop (irrelevant to O). Of
    # GLB's 4 arriving updates, 2 are first writes and 2 carry the sums read back: plain writes, no update reads.
    inst = Instance.model_validate({"name": "flush", "workload": {"ranks": {"m": 4, "n": 2}, "einsums": [
        {"name": "A", "op": "exp", "output": {"tensor": "Y", "ranks": ["m", "n"]},
         "inputs": [{"tensor": "X", "ranks": ["m", "n"]}]},
        {"name": "B", "op": "add", "output": {"tensor": "O", "ranks": ["n"]},
         "inputs": [{"tensor": "Y", "ranks": ["m", "n"]}]}]},
        "architecture": {"levels": [{"name": "DRAM", "read_pj": "1", "write_pj": "1"},
                                    {"name": "GLB", "read_pj": "0.5", "write_pj": "0.5", "capacity_words": 32},
                                    {"name": "Reg", "read_pj": "0.01", "write_pj": "0.01", "capacity_words": 4}],
                         "compute_units": [{"name": "U", "ops": {"exp": {"energy_pj": "0.1"},
                                                                 "add": {"energy_pj": "0.1"}}}]}})
    levels = {"A": [("DRAM", ["X"]), ("GLB", ["Y"]), ("Reg", [])], "B": [("DRAM", ["O"]), ("GLB", ["Y", "O"]),
                                                                         ("Reg", ["O"])]}
    m = Mapping.model_validate({"einsums": [{"einsum": e, "compute_unit": "U", "levels": [
        {"level": lv, "keep": keep, "temporal": {"DRAM": [], "GLB": [{"rank": "m", "factor": 2}],
                                                 "Reg": [{"rank": "n", "factor": 2}]}[lv]}
        for lv, keep in levels[e]]} for e in ("A", "B")],
        "groups": [{"einsums": ["A", "B"], "fusion_level": "GLB",
                    "shared_loops": [{"level": "DRAM", "rank": "m", "factor": 2}]}]})
    sim, res = both(inst, m)
    for c in (sim_counts(sim, "Reg", "O"), counts(res, "Reg", "O")):
        assert (c["drains"], c["readbacks"], c["updates"], c["update_reads"]) == (4, 2, 8, 6)
    for c in (sim_counts(sim, "GLB", "O"), counts(res, "GLB", "O")):
        assert (c["updates"], c["update_reads"], c["drains"], c["reads"], c["writes"]) == (4, 0, 2, 4, 4)
    for c in (sim_counts(sim, "DRAM", "O"), counts(res, "DRAM", "O")):
        assert (c["updates"], c["writes"], c["update_reads"]) == (2, 2, 0)
    for c in (sim_counts(sim, "GLB", "Y"), counts(res, "GLB", "Y")):
        assert (c["updates"], c["update_reads"], c["reads"]) == (8, 0, 8)
    assert sim.peak["GLB"] == res.capacity_required["GLB"] == 4 + 2
    assert sim.peak["Reg"] == res.capacity_required["Reg"] == 2


def test_fusion_across_reduction_is_rejected():
    # Sharing the key loop m: SN would read a partial max.
    inst, m = softmax3("m")
    with pytest.raises(FusionAcrossReduction):
        simulate(inst, m)
    with pytest.raises(MappingError):
        analyze(inst, m)


# --------------------------------------------------------------------------------------------------------------
# Saved cases (minimal reproductions of past disagreements)
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(CASES.glob("*.json")), ids=lambda p: p.stem)
def test_saved_case(path):
    data = json.loads(path.read_text())
    check(Instance.model_validate(data["instance"]), Mapping.model_validate(data["mapping"]))


KEY_PROJECTION_THEN_QK = {"ranks": {"p": 4, "m": 4, "d": 2, "e": 2}, "einsums": [
    {"name": "KP", "op": "mac", "output": {"tensor": "K", "ranks": ["p", "e"]},
     "inputs": [{"tensor": "X", "ranks": ["p", "d"]}, {"tensor": "W", "ranks": ["d", "e"]}]},
    {"name": "QK", "op": "mac", "output": {"tensor": "S", "ranks": ["p", "m"]},
     "inputs": [{"tensor": "Q", "ranks": ["p", "e"]}, {"tensor": "K", "ranks": ["m", "e"]}]}]}


def _projection_then_qk(renames: dict) -> tuple[Instance, Mapping]:
    arch = {"levels": [{"name": "DRAM", "read_pj": "10", "write_pj": "10"},
                       {"name": "GLB", "read_pj": "1", "write_pj": "1", "capacity_words": 100}],
            "compute_units": [{"name": "U", "ops": {"mac": {"energy_pj": "0.5"}}}]}
    inst = Instance.model_validate({"name": "views", "workload": KEY_PROJECTION_THEN_QK, "architecture": arch})
    m = Mapping.model_validate({"einsums": [
        {"einsum": "KP", "compute_unit": "U", "levels": [
            {"level": "DRAM", "keep": ["X", "W"]},
            {"level": "GLB", "keep": ["X", "W", "K"], "temporal": [{"rank": r, "factor": 2} for r in "pde"]}]},
        {"einsum": "QK", "compute_unit": "U", "levels": [
            {"level": "DRAM", "keep": ["Q", "S"]},
            {"level": "GLB", "keep": ["Q", "K", "S"],
             "temporal": [{"rank": "m", "factor": 2 if renames else 4}, {"rank": "p", "factor": 4 if renames else 2},
                          {"rank": "e", "factor": 2}]}]}],
        "groups": [{"einsums": ["KP", "QK"], "fusion_level": "GLB",
                    "shared_loops": [{"level": "DRAM", "rank": "p", "factor": 2, "renames": renames}]}]})
    return inst, m


def test_fusion_across_a_renamed_dimension_by_hand():
    # K[p,e] is written by KP over its rank p (key positions) and read by QK as K[m,e]: QK's m is KP's p. A loop
    # shared over that dimension (p in KP, m in QK) tiles K alike in both: the K tile at GLB is 2x2, produced
    # and consumed per iteration, never in DRAM.
    inst, m = _projection_then_qk({"QK": "m"})
    sim, res = both(inst, m)
    assert ("DRAM", "K") not in res.counts
    for c in (sim_counts(sim, "GLB", "K"), counts(res, "GLB", "K")):
        assert c["updates"] == 16 and c["reads"] == 16 - 8 + 32   # 8 update reads, QK reads 32 (ops)
    assert sim.peak["GLB"] == res.capacity_required["GLB"]


def test_shared_loop_over_a_name_that_means_another_dimension_is_rejected():
    # The same loop by name: p is KP's key rank but QK's query rank, which does not index K. QK would read keys
    # KP has not produced yet; the evaluator refuses and the simulator sees the incomplete K.
    inst, m = _projection_then_qk({})
    with pytest.raises(MappingError, match="tiles a tensor differently"):
        analyze(inst, m)
    with pytest.raises(FusionAcrossReduction):
        simulate(inst, m)


@pytest.mark.parametrize("dram_loops, dram_z_bits", [([], 8), ([("k", 2), ("m", 2)], 32)])
def test_int8_operands_with_32_bit_partial_sums_by_hand(dram_loops, dram_z_bits):
    # 8-bit words, Z accumulated in 32 bits. Buf receives the units' updates: Z is 32-bit there (4 accesses of 8
    # bits per element). DRAM sees only final values (8-bit) unless the Buf tile of Z is revisited (k outside m at
    # DRAM): then its drains are partial sums and DRAM holds Z at 32 bits too.
    wl = {**MATMUL, "word_bits": 8, "tensors": {"Z": {"bits": 8, "accumulator_bits": 32}}}
    inst = Instance.model_validate({"name": "int8", "workload": wl, "architecture": two_level()})
    buf_loops = [("m", 2), ("n", 2), ("k", 2)] if not dram_loops else [("n", 2)]
    m = Mapping.model_validate(matmul_mapping(dram_loops, buf_loops))
    sim, res = both(inst, m)
    # Buf tiles: everything at Buf: A 4, B 4 (8-bit), Z 4 (32-bit); with the DRAM loops: A 1, B 2, Z 2
    want = 4 * 8 + 4 * 8 + 4 * 32 if not dram_loops else 1 * 8 + 2 * 8 + 2 * 32
    assert sim.peak_bits["Buf"] == res.capacity_bits_required["Buf"] == want
    assert res.capacity_required["Buf"] == want // 8
    dram_z = res.counts[("DRAM", "Z")]
    # DRAM energy of Z: 1 pJ per 8-bit read, 2 pJ per write; a 32-bit element is 4 accesses
    per = dram_z_bits // 8
    assert res.level_energy_fj[("DRAM", "Z")] == (dram_z.reads * 1000 + dram_z.writes * 2000) * per
    buf_z = res.counts[("Buf", "Z")]
    assert res.level_energy_fj[("Buf", "Z")] == (buf_z.reads * 100 + buf_z.writes * 200) * 4


def _nested(case) -> bool:
    """A case with a shared loop > 1 that encloses only part of its group."""
    return any(sl.einsums is not None and sl.factor > 1 for g in case[1].groups for sl in g.shared_loops)


@settings(max_examples=200, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(cases(nested=True).filter(_nested))
def test_evaluator_matches_simulator_on_nested_groups(case):
    """Fused groups whose shared loops form a tree (loops enclosing a run of the members, docs/model.md §3): the
    simulator runs the tree literally, the evaluator measures each group copy under the loops enclosing all its
    users; every count, capacity, energy and latency agree (or both reject a loop crossing a reduction)."""
    inst, mapping = case
    check(inst, mapping)


@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(online_cases())
def test_evaluator_matches_simulator_on_online_cascades(case):
    """Recurrences stepped by the simulator (state carried step by step, running reads checked against the steps
    applied) against the evaluator's closed forms, on 1-pass and 2-pass attention and random online cascades."""
    check(*case)


@settings(max_examples=150, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(butterfly_cases())
def test_evaluator_matches_simulator_on_butterfly_cascades(case):
    """Butterfly layers (each stage reads the previous one's output with one digit renamed: a view) with random
    fused groups and shared loops over the untouched digits: the simulator and the evaluator agree."""
    check(*case)
