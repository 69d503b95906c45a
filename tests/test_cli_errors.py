"""The real `mapsolve` command on bad input: exit code 2 and exactly one line on stderr naming the field or cause.

Every bad file is derived from instances/tiny_matmul.json or its mapping by mutating the loaded JSON (or, for
text-level faults, the JSON text) and written into tmp_path. Positive tests: every shipped instance validates,
every instance/mapping pair evaluates to JSON, and `schema` prints JSON Schemas.

The CLI runs through `mapsolve.cli.main.run()` (the entry point, with its argv rewriting) in this process, with
stdout/stderr captured and an escaping exception printed as the interpreter would (a Traceback, exit 1): starting
a fresh interpreter costs about a second (ortools), which for ~70 cases is most of the suite. `test_subprocess_*`
run a sample of the cases through a real `python -m mapsolve.cli.main`; MAPSOLVE_TEST_SUBPROCESS=1 runs every
case that way.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "instances"
TINY = INSTANCES / "tiny_matmul.json"
TINY_MAPPING = INSTANCES / "tiny_matmul.mapping.json"
PAIRS = sorted(p for ext in ("json", "yaml") for p in INSTANCES.glob(f"*.{ext}") if ".mapping." not in p.name)


ALWAYS_SUBPROCESS = os.environ.get("MAPSOLVE_TEST_SUBPROCESS") == "1"


def cli_subprocess(*args: str | Path) -> subprocess.CompletedProcess:
    """`mapsolve ARGS` in a fresh interpreter: `python -m mapsolve.cli.main` calls `run()`."""
    return subprocess.run([sys.executable, "-m", "mapsolve.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """`mapsolve ARGS` through `run()` in this process (or a subprocess if MAPSOLVE_TEST_SUBPROCESS=1)."""
    if ALWAYS_SUBPROCESS:
        return cli_subprocess(*args)
    from mapsolve.cli import main
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["mapsolve", *map(str, args)]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main.run()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # what the interpreter would do with an escaping exception
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def assert_input_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, nothing on stdout, one stderr line `mapsolve: error: ...` containing every needle."""
    assert "Traceback" not in proc.stdout and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and proc.stderr.endswith("\n"), proc.stderr
    line = lines[0]
    assert line.startswith("mapsolve: error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def tiny() -> dict:
    return json.loads(TINY.read_text())


def tiny_mapping() -> dict:
    return json.loads(TINY_MAPPING.read_text())


def level(d: dict, i: int) -> dict:
    return d["architecture"]["levels"][i]


def einsum(d: dict) -> dict:
    return d["workload"]["einsums"][0]


# ------------------------------------------------------------------------------------------------------------
# Bad instances: `validate` and `evaluate` (with the good mapping) must both reject them the same way
# ------------------------------------------------------------------------------------------------------------
def _prepend_reader_of_z(d: dict) -> None:
    d["workload"]["einsums"].insert(0, {"name": "P", "op": "add", "output": {"tensor": "P", "ranks": ["M"]},
                                        "inputs": [{"tensor": "Z", "ranks": ["M", "N"]}]})


def _append_consumer_with_other_ranks(d: dict) -> None:
    # Z[M,N] read with one dimension: a view must keep every dimension, with equal bounds
    d["workload"]["einsums"].append({"name": "C", "op": "mac", "output": {"tensor": "C", "ranks": ["M"]},
                                     "inputs": [{"tensor": "Z", "ranks": ["M"]}]})


def _pe_capacity_zero_must_keep(d: dict) -> None:
    level(d, 2)["capacity_words"] = 0
    level(d, 2)["must_keep"] = ["Z"]


INSTANCE_MUTATIONS: dict[str, tuple[Callable[[dict], None], tuple[str, ...]]] = {
    "bound_is_string": (lambda d: d["workload"]["ranks"].__setitem__("M", "abc"),
                        ("workload.ranks.M", "valid integer")),
    "bound_is_null": (lambda d: d["workload"]["ranks"].__setitem__("M", None),
                      ("workload.ranks.M", "valid integer")),
    "energy_is_string": (lambda d: level(d, 1).__setitem__("read_pj", "abc"),
                         ("architecture.levels[1].read_pj", "valid decimal")),
    "levels_is_object": (lambda d: d["architecture"].__setitem__("levels", {"DRAM": 1}),
                         ("architecture.levels", "valid list")),
    "unknown_field_top": (lambda d: d.__setitem__("bogus_field", 1), ("bogus_field: unknown field",)),
    "unknown_field_in_level": (lambda d: level(d, 1).__setitem__("capcity_words", 256),
                               ("architecture.levels[1].capcity_words: unknown field",)),
    "unknown_field_in_mesh": (lambda d: level(d, 2)["mesh"].__setitem__("z", 2),
                              ("architecture.levels[2].mesh.z: unknown field",)),
    "unknown_field_in_tensor_ref": (lambda d: einsum(d)["inputs"][0].__setitem__("rank", ["M"]),
                                    ("workload.einsums[0].inputs[0].rank: unknown field",)),
    "negative_bound": (lambda d: d["workload"]["ranks"].__setitem__("M", -3),
                       ("workload.ranks", "rank M", "bound -3 must be >= 1")),
    "zero_bound": (lambda d: d["workload"]["ranks"].__setitem__("K", 0),
                   ("workload.ranks", "rank K", "bound 0 must be >= 1")),
    "unknown_rank": (lambda d: einsum(d)["inputs"][0].__setitem__("ranks", ["M", "Q"]),
                     ("einsum Z", "tensor A uses rank 'Q'", "not in workload.ranks")),
    "input_produced_later": (_prepend_reader_of_z,
                             ("einsum P", "input Z is produced by a later Einsum")),
    "intermediate_with_other_ranks": (_append_consumer_with_other_ranks,
                                      ("einsum C", "tensor Z is read as")),
    "must_keep_missing_tensor": (lambda d: level(d, 1).__setitem__("must_keep", ["Q"]),
                                 ("level GLB", "must_keep names unknown tensor 'Q'")),
    "capacity_zero_must_keep": (_pe_capacity_zero_must_keep,
                                ("architecture.levels[2] (PE)", "capacity 0 words", "must_keep")),
    "bound_2_pow_50": (lambda d: d["workload"]["ranks"].__setitem__("M", 2**50),
                       ("rank M", "bound 1125899906842624 is too big")),
    "bound_40_digits": (lambda d: d["workload"]["ranks"].__setitem__("M", 10**39 + 7),
                        ("number 10000000000000000000", "is too big")),
    "capacity_40_digits": (lambda d: level(d, 1).__setitem__("capacity_words", 10**39),
                           ("number 10000000000000000000", "is too big")),
    "energy_4_decimals_string": (lambda d: level(d, 1).__setitem__("read_pj", "1.8945"),
                                 ("architecture.levels[1].read_pj", "3 decimal places")),
    "energy_4_decimals_number": (lambda d: d["architecture"]["compute_units"][0]["ops"]["mac"]
                                 .__setitem__("energy_pj", 17.1625),
                                 ("architecture.compute_units[0].ops.mac.energy_pj", "3 decimal places")),
    "energy_negative": (lambda d: level(d, 0).__setitem__("write_pj", "-1"),
                        ("architecture.levels[0].write_pj", "greater than or equal to 0")),
    "bandwidth_division_by_zero": (lambda d: level(d, 0).__setitem__("bandwidth", "1/0"),
                                   ("architecture.levels[0].bandwidth", "fraction")),
}


@pytest.fixture
def tiny_files(tmp_path: Path) -> Callable[..., Path]:
    def write(name: str, data: dict | str) -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data, indent=1))
        return path
    return write


@pytest.mark.parametrize("kind", INSTANCE_MUTATIONS)
def test_bad_instance(kind: str, tiny_files) -> None:
    mutate, needles = INSTANCE_MUTATIONS[kind]
    data = tiny()
    mutate(data)
    path = tiny_files(f"{kind}.json", data)
    line = assert_input_error(cli("validate", path), str(path), *needles)
    assert assert_input_error(cli("evaluate", path, TINY_MAPPING), *needles) == line


def test_bad_instance_mutations_start_from_a_good_file() -> None:
    """The base files are fine, so each case above fails for its own reason only."""
    assert cli("validate", TINY).returncode == 0
    assert cli("evaluate", TINY, TINY_MAPPING).returncode == 0


@pytest.mark.parametrize("text, needles", [
    ("{not json", ("not valid JSON", "line 1 column 2")),
    ("", ("not valid JSON", "line 1 column 1")),
    (json.dumps(tiny())[:-1], ("not valid JSON",)),               # truncated
    ("[" * 100_000 + "]" * 100_000, ("JSON nested too deeply",)),  # was a RecursionError traceback
], ids=["garbage", "empty", "truncated", "deeply_nested"])
def test_instance_not_json(text: str, needles: tuple[str, ...], tiny_files) -> None:
    path = tiny_files("bad.json", text)
    assert_input_error(cli("validate", path), str(path), *needles)
    assert_input_error(cli("evaluate", path, TINY_MAPPING), str(path), *needles)


def test_instance_top_level_not_an_object(tiny_files) -> None:
    path = tiny_files("list.json", [tiny()])
    assert_input_error(cli("validate", path), "(top level)", "valid dictionary")


def test_missing_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert_input_error(cli("validate", missing), str(missing), "no such file")
    assert_input_error(cli("evaluate", missing, TINY_MAPPING), str(missing), "no such file")
    assert_input_error(cli("evaluate", TINY, missing), str(missing), "no such file")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert_input_error(cli("validate", tmp_path), str(tmp_path), "cannot read")


def test_file_name_with_newline_stays_one_line(tmp_path: Path) -> None:
    """A newline in a name quoted in the message used to split the error over two lines."""
    line = assert_input_error(cli("validate", tmp_path / "no\nsuch.json"), "no such file")
    assert "no such.json" in line


# ------------------------------------------------------------------------------------------------------------
# Bad mappings: `evaluate` with the good instance
# ------------------------------------------------------------------------------------------------------------
def _levels(m: dict) -> list[dict]:
    return m["einsums"][0]["levels"]


MAPPING_MUTATIONS: dict[str, tuple[Callable[[dict], None], tuple[str, ...]]] = {
    "wrong_factors": (lambda m: _levels(m)[2]["temporal"][2].__setitem__("factor", 4),
                      ("einsum Z", "factors of rank K multiply to 4, bound is 8")),
    "exceeds_capacity": (lambda m: _levels(m)[2]["keep"].extend(["A", "B"]),
                         ("level PE", "need 36 words per instance", "capacity is 8")),
    "unknown_einsum": (lambda m: m["einsums"][0].__setitem__("einsum", "Nope"),
                       ("mapping.einsums", "unknown einsum 'Nope'")),
    "unknown_compute_unit": (lambda m: m["einsums"][0].__setitem__("compute_unit", "Nope"),
                             ("einsum Z", "unknown compute unit 'Nope'")),
    "spatial_exceeds_mesh": (lambda m: _levels(m)[1]["spatial"][0].__setitem__("factor", 4),
                             ("einsum Z, level GLB", "axis x multiply to 4", "mesh's 2")),
    "keeps_unused_tensor": (lambda m: _levels(m)[1]["keep"].append("Q"),
                            ("einsum Z, level GLB", "keeps 'Q'")),
    "unknown_field_nested": (lambda m: _levels(m)[0].__setitem__("tmeporal", []),
                             ("einsums[0].levels[0].tmeporal: unknown field",)),
    "factor_is_string": (lambda m: _levels(m)[2]["temporal"][2].__setitem__("factor", "eight"),
                         ("einsums[0].levels[2].temporal[2].factor", "valid integer")),
    "factor_zero": (lambda m: _levels(m)[2]["temporal"][2].__setitem__("factor", 0),
                    ("einsums[0].levels[2].temporal[2].factor", "greater than or equal to 1")),
    "factor_40_digits": (lambda m: _levels(m)[2]["temporal"][2].__setitem__("factor", 10**39),
                         ("number 10000000000000000000", "is too big")),
    "unknown_fusion_level": (lambda m: m.__setitem__("groups", [{"einsums": ["Z"], "fusion_level": "L9"}]),
                             ("groups[0]", "unknown fusion level 'L9'")),
}


@pytest.mark.parametrize("kind", MAPPING_MUTATIONS)
def test_bad_mapping(kind: str, tiny_files) -> None:
    mutate, needles = MAPPING_MUTATIONS[kind]
    data = tiny_mapping()
    mutate(data)
    path = tiny_files(f"{kind}.mapping.json", data)
    assert_input_error(cli("evaluate", TINY, path), *needles)


def test_5000_digit_integers(tiny_files) -> None:
    """Past Python's int-from-text limit (4300 digits); in a mapping this was a ValueError traceback."""
    huge = "1" + "0" * 4999  # json.dumps refuses such ints: splice the digits into the text
    inst = tiny_files("huge.json", json.dumps(tiny()).replace('"M": 8', f'"M": {huge}'))
    mapping = tiny_files("huge.mapping.json", json.dumps(tiny_mapping()).replace('"factor": 8', f'"factor": {huge}'))
    assert_input_error(cli("validate", inst), str(inst), "number 10000000000000000000", "is too big")
    assert_input_error(cli("evaluate", TINY, mapping), str(mapping), "number 10000000000000000000", "is too big")


@pytest.mark.parametrize("text, needles", [
    ("{not json", ("not valid JSON", "line 1 column 2")),
    ("[" * 100_000 + "]" * 100_000, ("JSON nested too deeply",)),  # was a RecursionError traceback
], ids=["garbage", "deeply_nested"])
def test_mapping_not_json(text: str, needles: tuple[str, ...], tiny_files) -> None:
    path = tiny_files("bad.mapping.json", text)
    assert_input_error(cli("evaluate", TINY, path), str(path), *needles)


def test_instance_given_as_mapping() -> None:
    assert_input_error(cli("evaluate", TINY, TINY), str(TINY), "einsums: Field required")


def test_schema_unknown_kind() -> None:
    assert_input_error(cli("schema", "workload"), "schema: unknown kind 'workload'", "instance or mapping")


@pytest.mark.parametrize("args, needles", [
    (("TINY", "--time-limit", "abc"), ("--time-limit", "valid number", "mapsolve solve --help")),
    (("TINY", "--bogus"), ("No such option: --bogus",)),
    (("solve", "TINY", "--workers", "two"), ("--workers",)),
    (("evaluate",), ("Missing argument", "instance")),
    (("evaluate", "TINY"), ("Missing argument", "mapping")),
    (("schema",), ("Missing argument", "kind")),
    (("trace", "plot"), ("Missing argument",)),
    (("trace", "bogus"), ("No such command", "bogus")),
    (("verify", "TINY", "--max-candidates", "1e3"), ("--max-candidates",)),
])
def test_usage_errors_are_one_line(args, needles) -> None:
    """Command-line mistakes are bad input too: exit 2 and one line, not typer's framed panel."""
    assert_input_error(cli(*[TINY if a == "TINY" else a for a in args]), *needles)


# ------------------------------------------------------------------------------------------------------------
# Good input
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PAIRS, ids=lambda p: p.stem)
def test_validate_shipped_instance(path: Path) -> None:
    proc = cli("validate", path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith(f"{path}: ok")


@pytest.mark.parametrize("path", PAIRS, ids=lambda p: p.stem)
def test_evaluate_shipped_pair_json(path: Path) -> None:
    mapping = next((m for ext in ("json", "yaml") if (m := path.with_name(f"{path.stem}.mapping.{ext}")).exists()),
                   None)
    assert mapping is not None, f"{path.name} has no mapping file"
    proc = cli("evaluate", path, mapping, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = json.loads(proc.stdout)
    for key in ("energy_fj", "latency_cycles"):
        assert type(out[key]) is int and out[key] > 0, (key, out[key])
    breakdown = out["breakdown"]
    assert isinstance(breakdown, dict)
    assert {"levels", "compute", "groups", "capacity_words"} <= set(breakdown)
    level_energy = sum(lv["energy_fj"] for lv in breakdown["levels"].values())
    unit_energy = sum(u["energy_fj"] for u in breakdown["compute"].values())
    assert level_energy + unit_energy == out["energy_fj"]
    assert sum(g["latency_cycles"] for g in breakdown["groups"]) == out["latency_cycles"]


@pytest.mark.parametrize("kind, title, example", [
    ("instance", "Instance", TINY),
    ("mapping", "Mapping", TINY_MAPPING),
])
def test_schema(kind: str, title: str, example: Path) -> None:
    proc = cli("schema", kind)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    schema = json.loads(proc.stdout)
    assert schema["title"] == title and schema["type"] == "object"
    assert schema["additionalProperties"] is False  # unknown fields are rejected
    assert isinstance(schema.get("$defs"), dict)
    for ref in json.dumps(schema).split('"$ref": "')[1:]:  # every reference resolves
        target = ref.split('"', 1)[0]
        assert target.startswith("#/$defs/") and target.removeprefix("#/$defs/") in schema["$defs"], target
    data = json.loads(example.read_text())
    assert set(schema.get("required", [])) <= set(data) <= set(schema["properties"])



# ------------------------------------------------------------------------------------------------------------
# A sample of the above through a fresh interpreter (`python -m mapsolve.cli.main`)
# ------------------------------------------------------------------------------------------------------------
def _subprocess_case(kind: str, tmp: Path) -> tuple[list, tuple[str, ...]]:
    if kind == "instance_unknown_field":
        data = tiny()
        level(data, 1)["capcity_words"] = 256
        (tmp / "i.json").write_text(json.dumps(data))
        return ["validate", tmp / "i.json"], ("architecture.levels[1].capcity_words: unknown field",)
    if kind == "instance_zero_bound":
        data = tiny()
        data["workload"]["ranks"]["K"] = 0
        (tmp / "i.json").write_text(json.dumps(data))
        return ["evaluate", tmp / "i.json", TINY_MAPPING], ("rank K", "bound 0 must be >= 1")
    if kind == "instance_deeply_nested":
        (tmp / "i.json").write_text("[" * 100_000 + "]" * 100_000)
        return ["validate", tmp / "i.json"], ("JSON nested too deeply",)
    if kind == "mapping_wrong_factors":
        data = tiny_mapping()
        _levels(data)[2]["temporal"][2]["factor"] = 4
        (tmp / "m.json").write_text(json.dumps(data))
        return ["evaluate", TINY, tmp / "m.json"], ("factors of rank K multiply to 4, bound is 8",)
    if kind == "mapping_5000_digits":
        text = json.dumps(tiny_mapping()).replace('"factor": 8', '"factor": 1' + "0" * 4999)
        (tmp / "m.json").write_text(text)
        return ["evaluate", TINY, tmp / "m.json"], ("is too big",)
    if kind == "file_name_with_newline":
        return ["validate", tmp / "no\nsuch.json"], ("no such.json: no such file",)
    if kind == "schema_unknown_kind":
        return ["schema", "workload"], ("unknown kind 'workload'",)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["instance_unknown_field", "instance_zero_bound", "instance_deeply_nested",
                                  "mapping_wrong_factors", "mapping_5000_digits", "file_name_with_newline",
                                  "schema_unknown_kind"])
def test_subprocess_bad_input(kind: str, tmp_path: Path) -> None:
    args, needles = _subprocess_case(kind, tmp_path)
    assert_input_error(cli_subprocess(*args), *needles)


def test_subprocess_good_input() -> None:
    proc = cli_subprocess("evaluate", TINY, TINY_MAPPING, "--json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert type(json.loads(proc.stdout)["energy_fj"]) is int
    proc = cli_subprocess("schema", "mapping")
    assert proc.returncode == 0 and json.loads(proc.stdout)["title"] == "Mapping"


def test_closed_stdout_is_not_a_traceback() -> None:
    """`mapsolve ... | head` closes the pipe early: a quiet exit, not a traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "mapsolve.cli.main", "schema", "instance"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()   # before the interpreter has started: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err, err


@pytest.mark.parametrize("command", ["solve", "verify"])
def test_unknown_nesting_is_refused(command: str) -> None:
    proc = cli(command, TINY, "--nesting", "deep")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--nesting must be tree or flat" in proc.stderr


def test_shared_loop_tree_violation_names_the_loops(tmp_path: Path) -> None:
    """A loop enclosing more members than a loop outside it (not a tree) is refused with one line."""
    mapping = json.loads((INSTANCES / "tiny_nested.mapping.json").read_text())
    loops = mapping["groups"][0]["shared_loops"]
    loops[0]["einsums"], loops[1]["einsums"] = ["QK", "AV"], None     # the inner loop now encloses Z too
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps(mapping))
    proc = cli("evaluate", INSTANCES / "tiny_nested.json", bad)
    assert proc.returncode == 2
    assert "form a tree" in proc.stderr and proc.stderr.strip().count("\n") == 0
