"""Butterfly layers (model/butterfly.py, `mapsolve make butterfly`, docs/butterfly.md): the cascade's shape and
operation counts, the generator's errors, and relations of proven optima that need no enumerator.
(The simulator and the enumerator checks are in test_model_vs_simulator.py and test_enumerator.py.)"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mapsolve.model import evaluate  # noqa: E402
from mapsolve.model.make import MakeError, butterfly, butterfly_workload, hybrid  # noqa: E402
from mapsolve.solver import solve  # noqa: E402
from test_cli_errors import assert_input_error, cli  # noqa: E402

DET = 30   # deterministic seconds per solve: these take under 3


def macs(wl) -> int:
    return sum(math.prod(wl.ranks[r] for r in e.space) for e in wl.einsums)


@pytest.mark.parametrize("n, radix, stages", [(16, 2, 4), (4096, 64, 2), (4096, 16, 3), (32, 4, 3), (8, 8, 1)])
def test_stages_and_macs(n, radix, stages):
    """⌈log_R N⌉ stages, N·R_l MACs per vector per stage (2N for radix 2), weights N·R_l per stage."""
    wl = butterfly_workload(n, 2, 3, radix)
    assert len(wl.einsums) == stages
    bounds = [wl.ranks[f"N{p}"] for p in range(stages)]
    assert math.prod(bounds) == n
    assert macs(wl) == sum(2 * 3 * n * r for r in bounds)
    for e, r in zip(wl.einsums, bounds):
        w = e.inputs[0]
        assert math.prod(wl.ranks[x] for x in w.ranks) == n * r
        assert e.reduced == {f"J{e.name[1:]}"}


def test_each_stage_reads_the_previous_output_as_a_view():
    wl = butterfly_workload(8, 1, 4, 2)
    for prev, e in zip(wl.einsums, wl.einsums[1:]):
        read = next(t for t in e.inputs if t.tensor == prev.output.tensor)
        assert len(read.ranks) == len(prev.output.ranks)
        diff = [i for i, (a, b) in enumerate(zip(read.ranks, prev.output.ranks)) if a != b]
        assert len(diff) == 1 and read.ranks[diff[0]].startswith("J")


def test_fft_counts_four_real_macs_per_complex_mac():
    learned, fft = butterfly_workload(16, 1, 4, 2), butterfly_workload(16, 1, 4, 2, weights="fft")
    assert macs(fft) == 4 * macs(learned)
    twiddle = fft.einsums[2].inputs[0]
    assert twiddle.ranks == ["N0", "N1", "N2", "JN2", "C", "CI"]   # the digits below the stage only


def test_two_d_mixing_runs_sequence_then_hidden_stages():
    wl = butterfly_workload(16, 1, 8, 4, mix="both")
    assert [e.name for e in wl.einsums] == ["MN0", "MN1", "MH0", "MH1"]
    assert wl.einsums[-1].output.tensor == "Y"
    assert macs(wl) == 2 * 16 * 8 * 4 + 16 * 8 * (4 + 2)


@pytest.mark.parametrize("kw, needle", [({"n": 12}, "not a power of two"), ({"n": 16, "radix": 3}, "radix 3"),
                                         ({"n": 16, "mix": "rows"}, "--mix"), ({"n": 16, "weights": "x"}, "--weights"),
                                         ({"n": 16, "arch": "gpu"}, "--arch"), ({"n": 16, "batch": 0}, "positive"),
                                         ({"n": 16, "hidden": 6, "mix": "hidden"}, "not a power of two")])
def test_generator_errors_name_the_argument(kw, needle):
    with pytest.raises(MakeError, match=needle):
        butterfly(**{"hidden": 4, **kw})


def test_make_butterfly_cli(tmp_path):
    out = tmp_path / "b.json"
    proc = cli("make", "butterfly", "--n", "64", "--hidden", "8", "--radix", "8", "-o", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert len(doc["workload"]["einsums"]) == 2 and "arXiv 2411.00734" in doc["description"]
    assert cli("validate", out).returncode == 0
    assert_input_error(cli("make", "butterfly", "--n", "48", "--hidden", "8", "-o", tmp_path / "c.json"),
                       "--n", "power of two")
    assert not (tmp_path / "c.json").exists()
    proc = cli("make", "hybrid", "--blocks", "3", "--attention", "1", "--where", "middle", "--seq", "64",
               "--hidden", "16", "--heads", "2", "--ffn", "32", "--radix", "8", "-o", tmp_path / "h.json")
    assert proc.returncode == 0, proc.stderr
    assert cli("validate", tmp_path / "h.json").returncode == 0
    assert_input_error(cli("make", "hybrid", "--where", "side", "-o", tmp_path / "i.json"), "--where")
    proc = cli("make", "hybrid", "--blocks", "2", "--seq", "16", "--hidden", "8", "--heads", "1", "--ffn", "16",
               "--radix", "16", "--ffn-mix", "butterfly", "--ffn-radix", "4", "-o", tmp_path / "f.json")
    assert proc.returncode == 0, proc.stderr
    assert cli("validate", tmp_path / "f.json").returncode == 0
    assert "butterfly-factorised FFN" in json.loads((tmp_path / "f.json").read_text())["description"]
    assert_input_error(cli("make", "hybrid", "--hidden", "16", "--ffn", "40", "--ffn-mix", "butterfly", "-o",
                           tmp_path / "j.json"), "--ffn")
    assert_input_error(cli("make", "hybrid", "--ffn-mix", "sparse", "-o", tmp_path / "j.json"), "--ffn-mix")


def _optimum(inst) -> int:
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=DET)
    assert res.status == "OPTIMAL", (res.status, res.diagnosis)
    return res.objective[0]


def test_growing_the_shared_buffer_never_costs_more_and_fuses_when_it_fits():
    """A 64-point radix-8 layer: with a 64-word shared buffer the stages run apart; with 512 words (the 64 points
    times 8 channels) they fuse and the optimum falls; more room changes nothing."""
    inst = butterfly(64, 1, 8, 8)
    optima, fused = [], []
    for words in (64, 512, 2**19):
        levels = [lv.model_copy(update={"capacity_words": words}) if lv.name == "GLB" else lv
                  for lv in inst.architecture.levels]
        small = inst.model_copy(update={"architecture": inst.architecture.model_copy(update={"levels": levels})})
        res = solve(small, "energy", workers=1, seed=0, deterministic_time=DET)
        assert res.status == "OPTIMAL", res.diagnosis
        optima.append(res.objective[0])
        fused.append(any(len(g.einsums) > 1 for g in res.mapping.groups))
    assert optima[0] > optima[1] >= optima[2]     # measured: 332,267,520 fJ apart, 270,242,304 fused
    assert fused == [False, True, True]


def test_batch_copies_cost_no_less_than_one_copy_each():
    """Replicating the batch: the optimum of batch 2 is at most twice that of batch 1 (running the one-copy optimum
    twice is a valid mapping of it) and above it (twice the MACs, and every MAC costs energy)."""
    one, two = _optimum(butterfly(64, 1, 8, 8)), _optimum(butterfly(64, 2, 8, 8))
    assert one < two <= 2 * one


@pytest.mark.parametrize("where, kinds", [("bottom", "abbb"), ("top", "bbba"), ("middle", "babb")])
def test_hybrid_places_the_attention_blocks(where, kinds):
    inst = hybrid(blocks=4, attention=1, where=where, seq=64, hidden=16, heads=2, ffn=32, radix=8)
    names = [e.name for e in inst.workload.einsums]
    got = "".join("a" if f"L{i}QK" in names else "b" for i in range(4))
    assert got == kinds
    # every block reads the previous block's output and writes the next one's input
    for i in range(4):
        assert any(t.tensor == f"X{i}" for e in inst.workload.einsums if e.name.startswith(f"L{i}")
                   for t in e.inputs)
        assert any(e.output.tensor == f"X{i + 1}" for e in inst.workload.einsums)


def test_hybrid_counts_and_a_valid_mapping_at_once():
    """Per block: a butterfly block's MACs are its stages' plus the FFN's; an attention block's the projections',
    QK's and AV's. With almost no budget the mapper still returns a complete valid mapping of the whole stack."""
    inst = hybrid(blocks=2, attention=1, where="top", seq=64, hidden=16, heads=2, ffn=32, radix=8)
    wl = inst.workload
    by_block = [sum(math.prod(wl.ranks[r] for r in e.space) for e in wl.einsums
                    if e.name.startswith(f"L{i}") and e.op == "mac") for i in range(2)]
    n, d, g = 64, 16, 32
    ffn = 2 * n * d * g
    assert by_block[0] == 2 * n * 8 * d + ffn
    assert by_block[1] == 4 * n * d * d + 2 * n * n * d + ffn
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=0.01, certify="cheap")
    assert res.mapping is not None and res.status in ("OPTIMAL", "FEASIBLE")
    ev = evaluate(inst, res.mapping)
    assert (ev.energy_fj, ev.latency_cycles) == (res.energy_fj, res.latency_cycles)


def test_hybrid_butterfly_ffn_counts_and_a_valid_mapping_at_once():
    """A butterfly-factorised FFN (G = r·D: r butterflies over the hidden digits per projection) has
    2·N·D·r·ΣR_l MACs instead of 2·N·D·G; the hidden dimension is digits in every block, so the blocks chain; the
    mapper maps the stack at once."""
    inst = hybrid(blocks=2, attention=1, where="top", seq=64, hidden=16, heads=2, ffn=32, radix=8,
                  ffn_mix="butterfly", ffn_radix=4)
    wl = inst.workload
    assert "D" not in wl.ranks and "G" not in wl.ranks and (wl.ranks["D0"], wl.ranks["D1"], wl.ranks["FX"]) == (4, 4, 2)
    by_block = [sum(math.prod(wl.ranks[r] for r in e.space) for e in wl.einsums
                    if e.name.startswith(f"L{i}") and e.op == "mac") for i in range(2)]
    n, d, r = 64, 16, 2
    ffn = 2 * n * d * r * (4 + 4)
    assert by_block[0] == 2 * n * 8 * d + ffn
    assert by_block[1] == 4 * n * d * d + 2 * n * n * d + ffn
    for i in range(2):
        assert any(t.tensor == f"X{i}" for e in wl.einsums if e.name.startswith(f"L{i}") for t in e.inputs)
    res = solve(inst, "energy", workers=1, seed=0, deterministic_time=0.01, certify="cheap")
    assert res.mapping is not None and res.status in ("OPTIMAL", "FEASIBLE")
    ev = evaluate(inst, res.mapping)
    assert (ev.energy_fj, ev.latency_cycles) == (res.energy_fj, res.latency_cycles)


def test_hybrid_errors_name_the_argument():
    with pytest.raises(MakeError, match="--where"):
        hybrid(where="side")
    with pytest.raises(MakeError, match="--heads"):
        hybrid(hidden=10, heads=4)
    with pytest.raises(MakeError, match="--attention"):
        hybrid(blocks=2, attention=3)
    with pytest.raises(MakeError, match="--ffn-radix"):
        hybrid(hidden=64, ffn=128, ffn_mix="butterfly", ffn_radix=3)
