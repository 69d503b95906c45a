"""Regression tests for the hostile-input classes of the hardening issue: each class that once gave a silent
miscount, a traceback, a hang or a lost result now gets the contract (exit 2 with one line naming the field or the
flag, or a correct answer with every output it could write).

The CLI runs in this process through `run()` (tests/test_cli_errors.py's `cli`), on files derived from
instances/tiny_matmul.json, its mapping and tiny_attention's mapping.
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from test_cli_errors import INSTANCES, TINY, TINY_MAPPING, assert_input_error, cli, level, tiny, tiny_mapping


def write(tmp_path: Path, name: str, doc) -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def one_error_line(proc) -> str:
    """Exit 2 and one `mapsolve: error:` line, the last on stderr (after progress lines; stdout may hold a
    result that could not be written)."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("mapsolve: error: ")]
    assert len(errors) == 1 and proc.stderr.splitlines()[-1] == errors[0], proc.stderr
    return errors[0]


# ------------------------------------------------------------------------------------------------------------
# Silent acceptance: JSON booleans where numbers are expected, duplicates in sets, empty names
# ------------------------------------------------------------------------------------------------------------
BOOLEAN_IN_NUMBER = {
    "rank bound": (lambda d: d["workload"]["ranks"].__setitem__("M", True), "workload.ranks.M"),
    "capacity_words": (lambda d: level(d, 1).__setitem__("capacity_words", False),
                       "architecture.levels[1].capacity_words"),
    "mesh.x": (lambda d: level(d, 2)["mesh"].__setitem__("x", True), "architecture.levels[2].mesh.x"),
    "bandwidth": (lambda d: level(d, 1).__setitem__("bandwidth", True), "architecture.levels[1].bandwidth"),
    "per_cycle": (lambda d: d["architecture"]["compute_units"][0]["ops"]["mac"].__setitem__("per_cycle", True),
                  "architecture.compute_units[0].ops.mac.per_cycle"),
    "seed": (lambda d: d["solver"].__setitem__("seed", True), "solver.seed"),
    "time_limit_s": (lambda d: d["solver"].__setitem__("time_limit_s", True), "solver.time_limit_s"),
    "word_bits": (lambda d: d["workload"].__setitem__("word_bits", True), "workload.word_bits"),
}


@pytest.mark.parametrize("case", sorted(BOOLEAN_IN_NUMBER))
def test_a_boolean_is_not_a_number(tmp_path, case):
    mutate, where = BOOLEAN_IN_NUMBER[case]
    d = tiny()
    mutate(d)
    assert_input_error(cli("validate", write(tmp_path, "bad.json", d)), where, "not true or false")


def test_a_flag_takes_only_true_or_false(tmp_path):
    d = tiny()
    level(d, 2)["mesh"]["multicast"] = 1
    assert_input_error(cli("validate", write(tmp_path, "bad.json", d)), "architecture.levels[2].mesh.multicast")


def test_a_boolean_mapping_factor_is_refused(tmp_path):
    m = tiny_mapping()
    m["einsums"][0]["levels"][0]["temporal"][0]["factor"] = True
    line = assert_input_error(cli("evaluate", TINY, write(tmp_path, "m.json", m)), "not true or false")
    assert "einsums[0].levels[0].temporal[0].factor" in line


SET_LISTS = {
    "may_keep": lambda d: level(d, 1).__setitem__("may_keep", ["A", "B", "A"]),
    "must_keep": lambda d: level(d, 1).__setitem__("must_keep", ["B", "B"]),
    "serves": lambda d: level(d, 2).__setitem__("serves", ["mac", "mac"]),
}


@pytest.mark.parametrize("case", sorted(SET_LISTS))
def test_a_duplicate_in_a_set_is_refused(tmp_path, case):
    d = tiny()
    SET_LISTS[case](d)
    assert_input_error(cli("validate", write(tmp_path, "bad.json", d)), case, "listed twice")


def test_a_tensor_kept_twice_is_refused_not_scored(tmp_path):
    m = tiny_mapping()
    m["einsums"][0]["levels"][1]["keep"] = ["A", "B", "Z", "Z"]
    assert_input_error(cli("evaluate", TINY, write(tmp_path, "m.json", m)), "m.json",
                       "einsums[0].levels[1].keep", "Z is listed twice")


EMPTY_NAMES = {
    "tensor": lambda d: d["workload"]["einsums"][0]["inputs"][0].__setitem__("tensor", ""),
    "rank name": lambda d: d["workload"]["ranks"].__setitem__("", 4),
    "level name": lambda d: level(d, 1).__setitem__("name", ""),
    "instance name": lambda d: d.__setitem__("name", ""),
}


@pytest.mark.parametrize("case", sorted(EMPTY_NAMES))
def test_an_empty_name_is_refused(tmp_path, case):
    d = tiny()
    EMPTY_NAMES[case](d)
    assert_input_error(cli("validate", write(tmp_path, "bad.json", d)), "at least 1 character")


def test_an_empty_objective_is_refused():
    assert_input_error(cli("solve", TINY, "--objective", "", "--deterministic-time", "1"), "--objective")


# ------------------------------------------------------------------------------------------------------------
# Tracebacks and hangs: numbers the solver or the report cannot take are refused up front
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1e-30", "1e30"])
def test_extreme_bandwidths_are_refused_by_validate(tmp_path, value):
    d = tiny()
    level(d, 1)["bandwidth"] = value
    assert_input_error(cli("validate", write(tmp_path, "bad.json", d)), "architecture.levels[1].bandwidth",
                       "2^40")


def test_a_bandwidth_of_large_coprime_terms_is_solved(tmp_path):
    d = tiny()
    level(d, 1)["bandwidth"] = "1000000007/999999937"
    out = tmp_path / "r.json"
    proc = cli("solve", write(tmp_path, "i.json", d), "--objective", "latency", "--deterministic-time", "5",
               "--json", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["status"] == "OPTIMAL"


@pytest.mark.parametrize("value", ["0", "0.0000000001"])
def test_a_clock_too_slow_to_print_is_refused(tmp_path, value):
    d = tiny()
    d["architecture"]["frequency_mhz"] = value
    assert_input_error(cli("validate", write(tmp_path, "bad.json", d)), "architecture.frequency_mhz")


def test_the_slowest_clock_allowed_prints_its_times(tmp_path):
    d = tiny()
    d["architecture"]["frequency_mhz"] = "0.001"
    proc = cli("solve", write(tmp_path, "i.json", d), "--objective", "latency", "--deterministic-time", "5")
    assert proc.returncode == 0, proc.stderr
    assert "latency" in proc.stdout


@pytest.mark.parametrize("flag,value", [("--time-limit", "nan"), ("--time-limit", "inf"),
                                        ("--deterministic-time", "nan"), ("--deterministic-time", "-1"),
                                        ("--seed", "2147483648"), ("--seed", "-1"), ("--workers", "0"),
                                        ("--workers", "1000000000")])
def test_search_flags_out_of_range_are_refused_at_once(flag, value):
    assert_input_error(cli("solve", TINY, flag, value), flag)


def test_a_fusion_level_off_a_members_path_is_a_mapping_error(tmp_path):
    m = json.loads((INSTANCES / "tiny_attention.mapping.json").read_text())
    m["groups"] = [{"einsums": ["QK", "MX"], "fusion_level": "VR"}]
    assert_input_error(cli("evaluate", INSTANCES / "tiny_attention.json", write(tmp_path, "m.json", m)),
                       "m.json", "groups[0]", "fusion level VR is not on the path of einsum QK")


# ------------------------------------------------------------------------------------------------------------
# Messages: name the field, never echo huge input, no Python reprs
# ------------------------------------------------------------------------------------------------------------
def test_a_huge_name_is_not_echoed(tmp_path):
    d = tiny()
    d["workload"]["ranks"]["M" * 100_000] = 2
    line = assert_input_error(cli("validate", write(tmp_path, "bad.json", d)), "workload.ranks", "characters")
    assert len(line) < 400


def test_a_too_big_number_names_its_field(tmp_path):
    text = TINY.read_text().replace('"M": 8', '"M": ' + "9" * 5000, 1)
    assert_input_error(cli("validate", write(tmp_path, "bad.json", text)), "workload.ranks.M", "5000 digits")


def test_a_key_given_twice_in_json_is_refused(tmp_path):
    """JSON's own reading keeps the last of two equal keys silently: a stale copy of a field would win."""
    text = TINY.read_text().replace('"M": 8', '"M": 8, "M": 2', 1)
    assert text != TINY.read_text()
    assert_input_error(cli("validate", write(tmp_path, "bad.json", text)), "'M' appears twice")
    mapping = TINY_MAPPING.read_text().replace('"einsums": [', '"groups": [], "groups": [], "einsums": [', 1)
    assert_input_error(cli("evaluate", TINY, write(tmp_path, "bad.mapping.json", mapping)), "'groups' appears twice")


def test_the_status_line_shows_numbers_not_lists():
    proc = cli("solve", TINY, "--objective", "energy,latency", "--deterministic-time", "5")
    assert proc.returncode == 0, proc.stderr
    status = next(ln for ln in proc.stdout.splitlines() if ln.startswith("status"))
    # engineering units since issue 16 (the exact integers are in --json): "energy 22.36 nJ, latency 128 cycles"
    assert "[" not in status and re.search(r"energy \d[\d.]* [fpnµm]?J, latency \d[\d,]* cycles", status), status


# ------------------------------------------------------------------------------------------------------------
# Outputs: every path checked before the search; a write that fails mid-way loses nothing else
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--json", "--trace", "--solver-log"])
def test_an_output_path_in_a_missing_folder_is_refused_before_solving(tmp_path, flag):
    proc = cli("solve", TINY, "--deterministic-time", "5", flag, tmp_path / "no" / "such" / "file")
    assert_input_error(proc, flag, "does not exist")


def test_an_output_path_that_is_a_folder_is_refused_before_solving(tmp_path):
    assert_input_error(cli("solve", TINY, "--deterministic-time", "5", "--json", tmp_path), "--json",
                       "is a folder")


def test_export_model_into_a_missing_folder_is_refused(tmp_path):
    assert_input_error(cli("solve", TINY, "--export-model", tmp_path / "none" / "m"), "--export-model")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_json_result_that_cannot_be_written_is_printed_instead():
    proc = cli("solve", TINY, "--deterministic-time", "5", "--json", "/dev/full", "--quiet")
    line = one_error_line(proc)
    assert "--json /dev/full" in line and "printed" in line
    doc = json.loads(proc.stdout)
    assert doc["status"] == "OPTIMAL" and doc["mapping"] is not None
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)   # written in place, never renamed over


def test_a_device_given_as_json_output_stays_a_device():
    proc = cli("solve", TINY, "--deterministic-time", "5", "--json", os.devnull, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_trace_that_fills_the_disk_keeps_whole_records_and_the_result(tmp_path, monkeypatch):
    from mapsolve.solver.trace import TraceWriter
    real = TraceWriter.write
    calls = {"n": 0}

    def write_then_fill(self, record):
        calls["n"] += 1
        if calls["n"] > 3:
            self.fh.write('{"half a rec')   # what a full disk leaves behind
            self.fh.flush()
            raise OSError(28, "No space left on device")
        real(self, record)
    monkeypatch.setattr(TraceWriter, "write", write_then_fill)
    trace, out = tmp_path / "t.jsonl", tmp_path / "r.json"
    proc = cli("solve", TINY, "--deterministic-time", "5", "--trace", trace, "--json", out)
    line = one_error_line(proc)
    assert "--trace" in line and "No space left on device" in line and "3 whole records" in line
    records = [json.loads(x) for x in trace.read_text().splitlines()]
    assert len(records) == 3 and records[0]["type"] == "header"
    assert json.loads(out.read_text())["status"] == "OPTIMAL"
    assert "energy by level" in proc.stdout


def test_a_model_export_that_fails_is_reported(tmp_path, monkeypatch):
    from ortools.sat.python import cp_model
    monkeypatch.setattr(cp_model.CpModel, "export_to_file", lambda self, path: False)
    proc = cli("solve", TINY, "--deterministic-time", "5", "--export-model", tmp_path / "m")
    line = one_error_line(proc)
    assert "--export-model" in line and "could not write" in line
    assert "energy by level" in proc.stdout


@pytest.mark.parametrize("where", ["name", "description"])
def test_a_number_is_not_a_name(tmp_path, where):
    text = TINY.read_text().replace('"name": "tiny_matmul"', f'"{where}": 1.5', 1) if where == "name" else \
        json.dumps({**tiny(), "description": 1e30}).replace('1e+30', '1e30')
    assert_input_error(cli("validate", write(tmp_path, "bad.json", text)), where, "not a number")


def test_a_variant_error_is_one_short_line(tmp_path):
    d = json.loads((INSTANCES / "tiny_variants.json").read_text())
    d["workload"]["variants"][0]["einsums"][0]["inputs"][1]["ranks"] = []
    line = assert_input_error(cli("validate", write(tmp_path, "bad.json", d)), "variants[0]", "is read as")
    assert "input_value" not in line and "errors.pydantic.dev" not in line and len(line) < 400


def test_validate_of_a_mapping_file_says_so():
    assert_input_error(cli("validate", TINY_MAPPING), "this is a mapping file", "mapsolve evaluate")
