"""Property-based fuzzing of the input contract (issue 17), with hypothesis.

The README's contract for `mapsolve validate INSTANCE`, `mapsolve evaluate INSTANCE MAPPING` and
`mapsolve INSTANCE [options]`: either exit 2 with exactly one line on stderr, `mapsolve: error: ...`, naming the
field or cause without echoing huge input, or a correct answer (0; 3 infeasible; 4 no mapping). Never a
traceback, an escaping exception, another exit code, a run past the time limit, or silent acceptance of input the
docs call invalid.

Every case mutates a shipped instance or mapping (instances/*.json) at a JSON position chosen by hypothesis:
extreme values, deleted keys, unknown keys, duplicated / swapped / emptied lists, renamed references, numeric
extremes on specific fields, and mapping decisions (factors, keep lists, levels, groups, shared loops). Each
mutation knows whether the docs make its result invalid (tests/fuzz_inputs.py), and then only exit 2 is right.
The CLI runs in this process through `mapsolve.cli.main.run()`, like tests/test_cli_errors.py. Solves are bounded
(`--deterministic-time 0.3 --time-limit 10`) and run on tiny instances only.

Deterministic: derandomized, no example database. 1,680 cases; solves are not shrunk (each step is a solve).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_inputs as fz  # noqa: E402

FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])



def fuzz(n: int, shrink: bool = True) -> settings:
    """`n` cases; solves skip shrinking (each step is a solve), their failure message is the reproducer."""
    phases = list(Phase) if shrink else [Phase.explicit, Phase.generate]
    return settings(FUZZ, max_examples=n, phases=phases)


INSTANCE_NAMES = sorted({i for i, _ in fz.PAIRS})
MAPPING_OF = {}
for _i, _m in fz.PAIRS:
    MAPPING_OF.setdefault(_i, _m)


def write(tmp: Path, name: str, doc) -> Path:
    path = tmp / name
    path.write_text(fz.dumps(doc))
    return path


def check_instance(mut: fz.Mutation, tmp: Path) -> None:
    """validate, and (when it accepts the file) evaluate with the shipped mapping: the same contract."""
    path = write(tmp, "i.json", mut.doc)
    run = fz.cli("validate", path)
    fz.assert_contract(run, mut.must_reject, what=str(mut))
    if run.code == 0:
        run = fz.cli("evaluate", path, fz.INSTANCES / MAPPING_OF[mut.base])
        fz.assert_contract(run, what=f"evaluate with the shipped mapping after {mut}")


@fuzz(650)
@given(data=st.data())
def test_instance_mutations(data, tmp_path: Path) -> None:
    """Any JSON position of a shipped instance: extreme values, deletions, unknown keys, list edits, renames."""
    check_instance(_mutated_instance(data, fz.generic), tmp_path)


@fuzz(250)
@given(data=st.data())
def test_instance_numeric_fields(data, tmp_path: Path) -> None:
    """Numeric extremes on rank bounds, capacities, bandwidths, per_cycle, meshes, energies, widths, solver."""
    check_instance(_mutated_instance(data, fz.numeric), tmp_path)


def _mutated_instance(data, mutation):
    """A shipped instance chosen by hypothesis, with 1-3 `mutation`s applied."""
    ch = fz.Chooser(data)
    return fz.stacked(ch, ch.choice(INSTANCE_NAMES, "instance"), [mutation])


@fuzz(350)
@given(data=st.data())
def test_mapping_mutations(data, tmp_path: Path) -> None:
    """Any JSON position of a shipped mapping, evaluated against its instance."""
    ch = fz.Chooser(data)
    inst, mapping = ch.choice(fz.PAIRS, "pair")
    mut = fz.stacked(ch, mapping, [fz.generic])
    run = fz.cli("evaluate", fz.INSTANCES / inst, write(tmp_path, "m.json", mut.doc))
    fz.assert_contract(run, mut.must_reject, what=str(mut))


@fuzz(250)
@given(data=st.data())
def test_mapping_decisions(data, tmp_path: Path) -> None:
    """Factors, keep lists, levels, compute units, groups (fusion levels off a member's path) and shared loops."""
    inst, mapping = fz.Chooser(data).choice(fz.PAIRS, "pair")
    mut = fz.mapping_targeted(fz.Chooser(data), inst, mapping)
    run = fz.cli("evaluate", fz.INSTANCES / inst, write(tmp_path, "m.json", mut.doc))
    fz.assert_contract(run, mut.must_reject, what=str(mut))


def check_solve_result(run: fz.Run, instance: Path, json_out: Path) -> None:
    """A solve that exits 0 wrote a --json result whose energy and latency `mapsolve evaluate` confirms."""
    if run.code != 0 or not json_out.is_file():
        return
    doc = json.loads(json_out.read_text())
    ev = fz.cli("evaluate", instance, json_out, "--json")
    fz.assert_contract(ev, what=f"evaluate of the solve result of {instance.name}")
    assert ev.code == 0, ev.err
    got = json.loads(ev.out)
    assert (got["energy_fj"], got["latency_cycles"]) == (doc["energy_fj"], doc["latency_cycles"]), \
        (instance.name, run.args, got["energy_fj"], doc["energy_fj"])


@fuzz(140, shrink=False)
@given(data=st.data())
def test_solve_flags(data, tmp_path: Path) -> None:
    """solve's options: limits, seed, objective, workers, nesting, certify, and output paths."""
    ch = fz.Chooser(data)
    tmp_path = Path(tempfile.mkdtemp(dir=tmp_path))   # per case: a --cache folder made by one case stays
    base = ch.choice(["tiny_matmul", "doc_example", "tiny_online"], "instance")
    instance = fz.INSTANCES / f"{base}.json"
    json_out = tmp_path / "out.json"
    json_out.unlink(missing_ok=True)
    flags: dict[str, str] = {}
    invalid: dict[str, str | None] = {}   # flag -> why its (last) value is invalid
    for _ in range(ch.integer(1, 3, "flags")):
        flag = ch.choice(list(fz.FLAG_VALUES) + fz.OUTPUT_FLAGS, "flag")
        if flag in fz.OUTPUT_FLAGS:
            where = ch.choice(["dir", "missing_dir", "file_as_dir", "ok"], "where")
            (tmp_path / "plain").write_text("x")
            value = {"dir": str(tmp_path), "missing_dir": str(tmp_path / "no" / "such" / "out"),
                     "file_as_dir": str(tmp_path / "plain" / "out"), "ok": str(tmp_path / f"ok{flag[2:]}")}[where]
            invalid[flag] = None
            if where != "ok" and flag != "--cache" and not (where == "dir" and flag == "--export-model"):
                invalid[flag] = f"{flag} {where}: the output cannot be written"
            if where == "file_as_dir" and flag == "--cache":
                invalid[flag] = "--cache under a plain file: the folder cannot be made"
        else:
            value = ch.choice(fz.FLAG_VALUES[flag], "value")
            invalid[flag] = fz.flag_invalid(flag, value)
        flags[flag] = value
    argv = [instance, "--quiet"]
    if "--json" not in flags:
        argv += ["--json", json_out]
    for flag in ("--deterministic-time", "--time-limit"):
        if flag not in flags:
            flags[flag] = dict(zip(fz.SOLVE_BOUNDS[::2], fz.SOLVE_BOUNDS[1::2]))[flag]
    for flag, value in flags.items():
        argv += [flag, value]
    limit = 10.0
    try:
        limit = min(float(flags["--time-limit"]), 86400.0) or 10.0
    except ValueError:
        pass
    limit = limit if limit == limit and limit > 0 else 10.0
    run = fz.cli(*argv)
    fz.assert_contract(run, "; ".join(w for w in invalid.values() if w) or None, time_limit=limit, what=" ".join(map(str, argv)))
    if "--json" not in flags:
        check_solve_result(run, instance, json_out)


@fuzz(40, shrink=False)
@given(data=st.data())
def test_solve_mutated_instances(data, tmp_path: Path) -> None:
    """Bounded solves of tiny instances with one numeric field at an extreme: the answer is exit 2 or a result
    `evaluate` confirms."""
    ch = fz.Chooser(data)
    base = ch.choice([f"{n}.json" for n in fz.SOLVABLE], "instance")
    mut = fz.stacked(ch, base, [fz.numeric, fz.numeric, fz.generic])
    path = write(tmp_path, "i.json", mut.doc)
    json_out = tmp_path / "out.json"
    json_out.unlink(missing_ok=True)
    run = fz.cli(path, "--quiet", "--json", json_out, *fz.SOLVE_BOUNDS)
    fz.assert_contract(run, mut.must_reject, time_limit=10, what=str(mut))
    check_solve_result(run, path, json_out)
