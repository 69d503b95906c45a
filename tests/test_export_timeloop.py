"""`mapsolve export timeloop`: every shipped mapping becomes Timeloop files that say the same nest.

Structural facts are read back from the written YAML (not from the exporter's own bookkeeping): per dimension the
factors over all levels multiply to the problem's bound, and per rank the dimensions it was cut into multiply to
its bound; each permutation lists every dimension once; the keep/bypass sets are the mapping's `keep`; a spatial
split puts the x loops on X; a fused group's shared loops are the outer loops of every member it encloses, and its
intermediates bypass DRAM. With a timeloop-model binary (TIMELOOP_MODEL=PATH, or on PATH), its counts are compared
with `mapsolve evaluate`'s (docs/interop.md, "What agrees").
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from math import prod
from pathlib import Path

import pytest
import yaml

from mapsolve.interop.timeloop_export import SCALAR, export
from mapsolve.interop.timeloop_stats import mapsolve_as_timeloop, parse_stats, timeloop_totals
from mapsolve.model import analyze, load_instance, load_mapping
from mapsolve.model.variants import select

from test_cli_errors import assert_input_error, cli

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "instances"


def instance_of(mapping: Path) -> Path:
    own = mapping.with_name(mapping.name.replace(".mapping.json", ".json"))
    return own if own.exists() else INSTANCES / "doc_example.json"   # doc_example_readback maps doc_example


MAPPINGS = sorted(INSTANCES.glob("*.mapping.json"))


def factors(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"([A-Za-z]+)=(\d+)", text)}


@pytest.fixture(scope="module")
def exported():
    out = {}
    for m in MAPPINGS:
        inst, mp = load_instance(instance_of(m)), load_mapping(m)
        files, exports = export(inst, mp)
        out[m.name] = (select(inst, mp.variant), mp, {k: yaml.safe_load(v) for k, v in files.items()}, exports)
    return out


def test_every_shipped_mapping_is_exported():
    assert len(MAPPINGS) >= 17


@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda p: p.name)
def test_factors_permutations_and_bounds(exported, mapping):
    inst, mp, docs, exports = exported[mapping.name]
    assert {ex.einsum for ex in exports} == {e.name for e in inst.workload.einsums}
    for ex in exports:
        shape = docs[ex.problem_file]["problem"]["shape"]
        bounds = docs[ex.problem_file]["problem"]["instance"]
        dims = shape["dimensions"]
        assert len(set(dims)) == len(dims) and all(re.fullmatch(r"[A-Za-z]", d) for d in dims)
        directives = docs[ex.mapping_file]["mapping"]
        loops = [d for d in directives if d["type"] in ("temporal", "spatial")]
        for d in loops:
            assert sorted(d["permutation"]) == sorted(dims), d   # each dimension exactly once
            assert set(factors(d["factors"])) == set(dims), d
        for dim in dims:
            assert prod(factors(d["factors"])[dim] for d in loops) == bounds[dim], (ex.einsum, dim)
        einsum = next(e for e in inst.workload.einsums if e.name == ex.einsum)
        for rank in einsum.space:   # the dimensions a rank was cut into multiply back to its bound
            assert prod(bounds[sd.letter] for sd in ex.dims[rank]) == inst.workload.ranks[rank]
        # every tensor dimension projects onto its rank's dimensions, the outer scaled by the inner bounds
        coeff = {c["name"]: c["default"] for c in shape.get("coefficients", [])}
        refs = {t.tensor: t for t in einsum.inputs}
        for ds in shape["data-spaces"]:
            tensor = ex.data_spaces[ds["name"]]
            ref = einsum.output if ds.get("read-write") else refs[tensor]
            ranks = ref.ranks or [SCALAR]   # a scalar projects on a dimension of bound 1
            assert ref.tensor == tensor and len(ds["projection"]) == len(ranks)
            for rank, terms in zip(ranks, ds["projection"]):
                assert [t[0] for t in terms] == [sd.letter for sd in ex.dims[rank]]
                scales = [coeff[t[1]] if len(t) == 2 else 1 for t in terms]
                assert scales == [prod(bounds[t2[0]] for t2 in terms[i + 1:]) for i in range(len(terms))]


@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda p: p.name)
def test_keep_bypass_and_spatial_split(exported, mapping):
    inst, mp, docs, exports = exported[mapping.name]
    arch = inst.architecture
    for ex in exports:
        em = next(m for m in mp.einsums if m.einsum == ex.einsum)
        directives = docs[ex.mapping_file]["mapping"]
        targets = {v: k for k, v in ex.levels.items()}
        unit = arch.unit(em.compute_unit)
        path = arch.path(unit.name)
        for pos, lm in enumerate(em.levels):
            mine = [d for d in directives if d["target"] == targets[lm.level]]
            (dt,) = [d for d in mine if d["type"] == "datatype"]
            assert not set(dt["keep"]) & set(dt["bypass"])
            assert set(dt["keep"]) | set(dt["bypass"]) == set(ex.data_spaces)
            assert {ex.data_spaces[n] for n in dt["keep"]} == set(lm.keep), (ex.einsum, lm.level)
            below = arch.levels[path[pos + 1]].mesh if pos + 1 < len(path) else unit.mesh
            spatial = [d for d in mine if d["type"] == "spatial"]
            assert len(spatial) == (below.size > 1)
            if spatial:
                d = spatial[0]
                f = factors(d["factors"])
                xs, ys = d["permutation"][:d["split"]], d["permutation"][d["split"]:]
                # each of the mapping's spatial loops on its axis, as one dimension of its rank
                for axis, letters in (("x", xs), ("y", ys)):
                    want = sorted(sp.factor for sp in lm.spatial if sp.axis == axis)
                    got = sorted(f[c] for c in letters if f[c] > 1)
                    assert got == [w for w in want if w > 1], (ex.einsum, lm.level, axis)
                    assert prod(f[c] for c in letters) <= getattr(below, axis)


def test_fused_groups_shared_loops_are_every_members_outer_loops(exported):
    seen_groups = 0
    for name, (inst, mp, docs, exports) in exported.items():
        by_name = {ex.einsum: ex for ex in exports}
        levels = [lv.name for lv in inst.architecture.levels]
        for g in mp.groups:
            if len(g.einsums) < 2:
                continue
            seen_groups += 1
            f = levels.index(g.fusion_level)
            for member in g.einsums:
                ex = by_name[member]
                targets = {v: k for k, v in ex.levels.items()}
                directives = docs[ex.mapping_file]["mapping"]
                assert set(ex.fused_with) == set(g.einsums)
                for lv in levels[:f]:
                    if lv not in targets:
                        continue
                    (tm,) = [d for d in directives if d["target"] == targets[lv] and d["type"] == "temporal"]
                    fac = factors(tm["factors"])
                    enclosing = [sl for sl in g.shared_loops if sl.level == lv and sl.encloses(member)]
                    for rank in {sl.rank_of(member) for sl in enclosing}:
                        want = prod(sl.factor for sl in enclosing if sl.rank_of(member) == rank)
                        assert prod(fac[sd.letter] for sd in ex.dims[rank]) == want, (name, member, lv, rank)
                    # nothing else loops above the fusion level: the member has no loops of its own there
                    assert prod(fac.values()) == prod(sl.factor for sl in enclosing), (name, member, lv)
                (dram,) = [d for d in directives if d["target"] == targets[levels[0]] and d["type"] == "datatype"]
                for n in dram["bypass"]:   # what bypasses DRAM is exactly the group's intermediates
                    assert ex.data_spaces[n] in ex.intermediates
                for n, t in ex.data_spaces.items():
                    if t in ex.intermediates:
                        assert n in dram["bypass"]
    assert seen_groups >= 8


def test_tiny_matmul_files(tmp_path):
    """The nest of instances/tiny_matmul.mapping.json, written out: Timeloop lists a level's loops innermost
    first, and M (x) and N (y) spread over the 2x2 PEs."""
    proc = cli("export", "timeloop", INSTANCES / "tiny_matmul.json", INSTANCES / "tiny_matmul.mapping.json",
               "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "Z: timeloop-model arch.yaml Z.problem.yaml Z.mapping.yaml Z.ert.yaml" in proc.stdout
    mapping = yaml.safe_load((tmp_path / "out" / "Z.mapping.yaml").read_text())["mapping"]
    pe = next(d for d in mapping if d["target"] == "PE" and d["type"] == "temporal")
    assert pe["permutation"] == "KNM" and factors(pe["factors"]) == {"K": 8, "M": 2, "N": 2}
    glb = next(d for d in mapping if d["target"] == "GLB" and d["type"] == "spatial")
    assert glb["permutation"][:glb["split"]] == "M" and glb["permutation"][glb["split"]] == "N"
    arch = yaml.safe_load((tmp_path / "out" / "arch.yaml").read_text())["architecture"]
    pe_node = arch["subtree"][0]["subtree"][0]["subtree"][0]
    assert pe_node["name"] == "PE_tile[0..3]"
    assert pe_node["local"][0]["attributes"] == {"word-bits": 16, "block-size": 1, "entries": 8, "meshX": 2}
    assert arch["subtree"][0]["local"][0]["attributes"]["meshX"] == 1
    ert = yaml.safe_load((tmp_path / "out" / "Z.ert.yaml").read_text())["ERT"]["tables"]
    assert {"name": "compute", "energy": 17.16} in ert[-1]["actions"]


def test_renamed_ranks_project_positionally(exported):
    """tiny_block: QK reads K[H,E,P] (written over P by the key projection) as K[..M]: QK's problem projects K on
    its own M; a recurrence reading its own state gets a data space of its own (tiny_online)."""
    inst, mp, docs, exports = exported["tiny_block.mapping.json"]
    qk = next(ex for ex in exports if ex.einsum == "QK")
    e = next(e for e in inst.workload.einsums if e.name == "QK")
    k_ref = next(t for t in e.inputs if t.tensor == "K")
    ds = next(d for d in docs[qk.problem_file]["problem"]["shape"]["data-spaces"] if d["name"] == "K")
    assert [[t[0] for t in terms] for terms in ds["projection"]] == \
        [[sd.letter for sd in qk.dims[r]] for r in k_ref.ranks]
    inst, mp, docs, exports = exported["tiny_online.mapping.json"]
    names = {ex.einsum: ex for ex in exports}
    rec = next(e for e in inst.workload.einsums if e.recurrence is not None)
    spaces = names[rec.name].data_spaces
    assert sorted(t for t in spaces.values() if t == rec.output.tensor) == [rec.output.tensor] * 2


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    tiny, tm = INSTANCES / "tiny_matmul.json", INSTANCES / "tiny_matmul.mapping.json"
    assert_input_error(cli("export", "timeloop", tmp_path / "none.json", tm), "no such file")
    assert_input_error(cli("export", "timeloop", tiny, tmp_path / "none.json"), "no such file")
    bad = tmp_path / "bad.mapping.json"
    bad.write_text(tm.read_text().replace('"factor": 8', '"factor": 4'))
    assert_input_error(cli("export", "timeloop", tiny, bad), "factors of rank K multiply to 4")
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_input_error(cli("export", "timeloop", tiny, tm, "-o", afile), "-o", "not a folder")
    assert_input_error(cli("export", "timeloop", tiny, tm, "-o", tmp_path / "no" / "such"), "does not exist")
    assert_input_error(cli("export", "timeloop", tiny, INSTANCES / "tiny_block.mapping.json"), "tiny_block")


def test_solve_json_result_is_accepted(tmp_path):
    """A `mapsolve solve --json` result carries the mapping under "mapping"."""
    import json
    doc = {"mapping": json.loads((INSTANCES / "tiny_matmul.mapping.json").read_text()), "energy_fj": 1}
    res = tmp_path / "result.json"
    res.write_text(json.dumps(doc))
    proc = cli("export", "timeloop", INSTANCES / "tiny_matmul.json", res, "-o", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "Z.mapping.yaml").read_text() == \
        export(load_instance(INSTANCES / "tiny_matmul.json"), load_mapping(res))[0]["Z.mapping.yaml"]


TIMELOOP = os.environ.get("TIMELOOP_MODEL") or shutil.which("timeloop-model")
# unfused or without cross-Einsum reuse: every count agrees; tiny_block and tiny_online: see docs/interop.md
AGREE = ["tiny_matmul", "tiny_chain", "tiny_attention", "tiny_nested", "tiny_int8", "tiny_variants", "doc_example",
         "doc_example_readback"]


@pytest.mark.skipif(TIMELOOP is None, reason="no timeloop-model (set TIMELOOP_MODEL=PATH)")
@pytest.mark.parametrize("name", AGREE)
def test_timeloop_model_counts_agree(tmp_path, name):
    m = INSTANCES / f"{name}.mapping.json"
    _assert_counts_agree(tmp_path, instance_of(m), m)


def _assert_counts_agree(tmp_path: Path, instance: Path, m: Path) -> None:
    inst, mp = load_instance(instance), load_mapping(m)
    files, exports = export(inst, mp)
    for n, text in files.items():
        (tmp_path / n).write_text(text)
    stats = {}
    for ex in exports:
        d = tmp_path / f"run-{ex.einsum}"
        d.mkdir()
        subprocess.run([TIMELOOP, *[str(tmp_path / f) for f in (ex.arch_file, ex.problem_file, ex.mapping_file,
                                                                 ex.ert_file)]],
                       cwd=d, check=True, capture_output=True, timeout=120)
        stats[ex.einsum] = parse_stats((d / "timeloop-model.stats.txt").read_text())
    result = analyze(inst, mp)
    computes, tl = timeloop_totals(exports, stats)
    assert computes == sum(u.ops for u in result.units.values())
    assert tl == mapsolve_as_timeloop(result)


def scalar_output_pair(tmp_path) -> tuple[Path, Path]:
    """tiny_matmul summed to one number: Z[] = sum over M, K, N of A[M,K] B[K,N] (same mapping)."""
    import json
    d = json.loads((INSTANCES / "tiny_matmul.json").read_text())
    d["workload"]["einsums"][0]["output"]["ranks"] = []
    inst = tmp_path / "scalar.json"
    inst.write_text(json.dumps(d))
    return inst, INSTANCES / "tiny_matmul.mapping.json"


def test_scalar_tensor_projects_on_a_dimension_of_bound_1(tmp_path):
    inst, m = scalar_output_pair(tmp_path)
    files, (ex,) = export(load_instance(inst), load_mapping(m))
    (sd,) = ex.dims[SCALAR]
    problem = yaml.safe_load(files[ex.problem_file])["problem"]
    z = next(ds for ds in problem["shape"]["data-spaces"] if ds["name"] == "Z")
    assert z["projection"] == [[[sd.letter]]] and problem["instance"][sd.letter] == 1
    for d in yaml.safe_load(files[ex.mapping_file])["mapping"]:
        if d["type"] != "datatype":
            assert factors(d["factors"])[sd.letter] == 1 and sd.letter in d["permutation"]


@pytest.mark.skipif(TIMELOOP is None, reason="no timeloop-model (set TIMELOOP_MODEL=PATH)")
def test_timeloop_model_counts_agree_on_a_scalar_output(tmp_path):
    inst, m = scalar_output_pair(tmp_path)
    _assert_counts_agree(tmp_path, inst, m)


def test_more_dimensions_than_letters_is_refused_in_one_line(tmp_path):
    """Timeloop's permutation syntax has 52 one-letter names: an Einsum over 53 ranks cannot be written."""
    import json
    d = json.loads((INSTANCES / "tiny_matmul.json").read_text())
    extra = [f"R{i}" for i in range(50)]
    d["workload"]["ranks"].update({r: 1 for r in extra})
    d["workload"]["einsums"][0]["inputs"][0]["ranks"] += extra
    inst = tmp_path / "wide.json"
    inst.write_text(json.dumps(d))
    assert_input_error(cli("export", "timeloop", inst, INSTANCES / "tiny_matmul.mapping.json", "-o", tmp_path / "o"),
                       "einsum Z: 53 Timeloop dimensions", "52 one-letter names")
    assert not (tmp_path / "o").exists()   # nothing written
