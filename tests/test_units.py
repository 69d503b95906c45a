"""Quantities with units and YAML instance files (issue 16, part 3): model/quantities.py, model/yaml_doc.py.

Every unit kind converts to the exact value the spec holds (a Fraction of words per cycle, a Decimal of pJ, an
integer of bits), nothing is rounded silently, and every refusal is one line with exit 2 through the CLI. A YAML
instance and its JSON twin evaluate to identical results.
"""
from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mapsolve.model import evaluate, load_instance, load_mapping  # noqa: E402
from mapsolve.model.load import InputError, read_instance  # noqa: E402
from mapsolve.model.quantities import FIELDS, convert  # noqa: E402
from test_cli_errors import assert_input_error, cli  # noqa: E402

ROOT = Path(__file__).parent.parent
INSTANCES = ROOT / "instances"
FFN = INSTANCES / "edge_ffn_gelu.yaml"
FFN_MAPPING = INSTANCES / "edge_ffn_gelu.mapping.yaml"
TINY = INSTANCES / "tiny_matmul.json"
TINY_MAPPING = INSTANCES / "tiny_matmul.mapping.json"


def doc(mhz=None, word_bits=16, access_bits=None, **level) -> dict:
    """A one-level instance document around `level`'s fields (for convert(), not validated)."""
    lv = {"name": "DRAM", **({"access_bits": access_bits} if access_bits is not None else {}), **level}
    arch = {"levels": [lv], "compute_units": [{"name": "U", "ops": {"mac": {"energy_pj": "1"}}}]}
    if mhz is not None:
        arch["frequency_mhz"] = mhz
    return {"workload": {"word_bits": word_bits}, "architecture": arch}


def level_field(field: str, text: str, **kw):
    out, conversions = convert(doc(**{field: text}, **kw))
    assert [c.text for c in conversions] == [text]
    return out["architecture"]["levels"][0][field], conversions[0].value


@pytest.mark.parametrize("text, mhz, word, expected", [
    ("614 GB/s", "1000", 16, Fraction(307)),                               # the brief's example: exactly 307/1
    ("614 GB/s", "1050", 8, Fraction(614 * 10**9 * 8, 8 * 1050 * 10**6)),  # TPU v4i: model/machines.py's figure
    ("50 GiB/s", "1000", 16, Fraction(50 * 2**30 * 8, 16 * 10**9)),        # FLAT edge: 2097152/78125
    ("400 GiB/s", "940", 16, Fraction(400 * 2**30 * 8, 16 * 940 * 10**6)),
    ("2 words/cycle", None, 16, Fraction(2)),
    ("64 B/cycle", None, 16, Fraction(32)),
    ("1.5 words per cycle", None, 16, Fraction(3, 2)),
    ("256 bit/cycle", None, 32, Fraction(8)),
    ("1 Gbit/s", "500", 16, Fraction(10**9, 16 * 500 * 10**6)),
    ("1 TB/s", "1000", 16, Fraction(500)),
])
def test_bandwidth(text, mhz, word, expected):
    spec_text, value = level_field("bandwidth", text, mhz=mhz, word_bits=word)
    assert value == expected and Fraction(spec_text) == expected


def test_bandwidth_uses_the_levels_access_width():
    _, value = level_field("read_bandwidth", "64 B/cycle", access_bits=64)
    assert value == 8
    _, value = level_field("write_bandwidth", "8 GB/s", mhz="1000", access_bits=64)
    assert value == 1


@pytest.mark.parametrize("text, expected", [("940 MHz", "940"), ("1.05 GHz", "1050"), ("500 kHz", "0.5"),
                                            ("1000000 Hz", "1")])
def test_frequency(text, expected):
    out, conv = convert(doc(mhz=text))
    assert out["architecture"]["frequency_mhz"] == expected and conv[0].value == Fraction(Decimal(expected))


@pytest.mark.parametrize("field, text, expected", [
    ("capacity_bits", "16 MiB", 16 * 2**23), ("capacity_bits", "512 KiB", 512 * 2**13),
    ("capacity_bits", "64 kB", 64000 * 8), ("capacity_bits", "100 bit", 100), ("capacity_bits", "8 words", 128),
    ("capacity_words", "128 B", 64), ("capacity_words", "64 words", 64), ("capacity_words", "1 KiB", 512),
])
def test_capacity(field, text, expected):
    spec_value, _ = level_field(field, text)
    assert spec_value == expected and type(spec_value) is int


@pytest.mark.parametrize("text, access_bits, expected", [
    ("1.88 pJ/bit", 8, "15.04"), ("7.03 pJ/bit", 8, "56.24"), ("3.9 pJ/bit", None, "62.4"),
    ("0.5 pJ", None, "0.5"), ("84 fJ", None, "0.084"), ("2.1e-12 J", None, "2.1"), ("1 nJ", None, "1000"),
    ("1.894 pJ/word", None, "1.894"), ("2 pJ/B", 32, "8"), ("1.88 pJ per bit", 8, "15.04"),
])
def test_access_energy(text, access_bits, expected):
    spec_text, value = level_field("read_pj", text, access_bits=access_bits)
    assert spec_text == expected and value == Fraction(Decimal(expected))


def test_op_energy_throughput_and_widths():
    d = doc()
    d["workload"]["word_bits"] = "2 B"
    d["workload"]["tensors"] = {"A": {"bits": "8 bit", "accumulator_bits": "32 bit"}}
    d["architecture"]["compute_units"][0]["ops"] = {
        "mac": {"energy_pj": "0.084 pJ/op", "per_cycle": "1 per cycle"},
        "gelu": {"energy_pj": "196.62 pJ", "per_cycle": "1/7 per cycle"},
        "tanh": {"energy_pj": "84 fJ/op", "per_cycle": "7 cycles/op"},
        "silu": {"energy_pj": "1", "per_cycle": "2 ops/cycle"}}
    out, conv = convert(d)
    ops = out["architecture"]["compute_units"][0]["ops"]
    assert ops["mac"] == {"energy_pj": "0.084", "per_cycle": "1/1"}
    assert ops["gelu"] == {"energy_pj": "196.62", "per_cycle": "1/7"}
    assert ops["tanh"] == {"energy_pj": "0.084", "per_cycle": "1/7"}
    assert ops["silu"] == {"energy_pj": "1", "per_cycle": "2/1"}
    assert out["workload"] == {"word_bits": 16, "tensors": {"A": {"bits": 8, "accumulator_bits": 32}}}
    assert len(conv) == 10
    assert d["workload"]["word_bits"] == "2 B", "the caller's document is not changed"


def test_bare_numbers_are_left_to_the_spec():
    """No unit, no conversion: the spec reads "3/7", "1.5", "1e-30" as it always did."""
    d = doc(bandwidth="3/7", read_pj="1.5", write_pj="1e-30", capacity_words=8)
    out, conv = convert(d)
    assert conv == [] and out is d


def test_every_kind_in_the_table_is_converted():
    kinds = {kind for _, kind in FIELDS}
    assert kinds == {"width", "frequency", "capacity_bits", "capacity_words", "bandwidth", "access_energy",
                     "op_energy", "throughput"}


def test_the_spec_keeps_its_exact_types():
    inst = load_instance(FFN)
    dram, glb, pe, vr = inst.architecture.levels
    assert dram.bandwidth == Fraction(2097152, 78125) and dram.read_pj == Decimal("62.4")
    assert glb.capacity_bits == 4194304 and glb.bandwidth == 128
    assert pe.write_pj == Decimal("0.57") and vr.capacity_words == 64
    assert inst.architecture.frequency_mhz == 1000
    gelu = inst.architecture.compute_units[1].ops["gelu"]
    assert gelu.energy_pj == Decimal("196.62") and gelu.per_cycle == Fraction(1, 7)


def test_validate_shows_every_conversion():
    proc = cli("validate", FFN)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{FFN}: ok")
    assert lines[1] == "converted 19 quantities with units (field: given -> exact value used):"
    assert '  architecture.levels[0].bandwidth: "50 GiB/s" -> 2097152/78125 words/cycle (≈ 26.8435)' in lines
    assert '  architecture.levels[0].read_pj: "3.9 pJ/bit" -> 62.4 pJ' in lines
    assert '  architecture.levels[1].capacity_bits: "512 KiB" -> 4194304 bits' in lines
    assert '  architecture.compute_units[1].ops.gelu.per_cycle: "1/7 per cycle" -> 1/7 ops/cycle (≈ 0.142857)' in lines
    _, conversions = read_instance(FFN)
    assert len(conversions) == 19


# ----------------------------------------------------------------------------------------------------------------
# Refusals: one line, exit 2, naming the field
# ----------------------------------------------------------------------------------------------------------------
def tiny() -> dict:
    return json.loads(TINY.read_text())


@pytest.mark.parametrize("where, value, needles", [
    (("levels", 0, "bandwidth"), "50 GiB/h", ("architecture.levels[0].bandwidth", 'unknown unit "GiB/h"')),
    (("levels", 0, "bandwidth"), "50 GiB/s", ("architecture.levels[0].bandwidth", "needs the clock",
                                              "architecture.frequency_mhz")),
    (("levels", 1, "read_pj"), "0.1 fJ", ("architecture.levels[1].read_pj", "0.0001 pJ", "not exact",
                                          "write 0 pJ or 0.001 pJ")),
    (("levels", 1, "write_pj"), "1/3 pJ", ("architecture.levels[1].write_pj", "write 0.333 pJ or 0.334 pJ")),
    (("levels", 1, "capacity_words"), "3 B", ("architecture.levels[1].capacity_words", "not a whole number",
                                              "nearest: 1 or 2 words of 16 bits")),
    (("levels", 1, "capacity_words"), "16 furlongs", ("capacity_words", 'unknown unit "furlongs"')),
    (("levels", 1, "capacity_bits"), "64 KB", ("capacity_bits", 'unknown unit "KB"', "kB", "KiB")),
    (("compute_units", 0, "ops", "mac", "energy_pj"), "1 pJ/bit", ("ops.mac.energy_pj", "unknown unit")),
    (("compute_units", 0, "ops", "mac", "per_cycle"), "0 cycles/op", ("ops.mac.per_cycle", "zero cycles")),
    (("frequency_mhz",), "1.5 Hz", ("architecture.frequency_mhz", "write 0.000001 MHz or 0.000002 MHz")),
    (("levels", 0, "bandwidth"), "1e999999 GB/s", ("architecture.levels[0].bandwidth", "out of range")),
])
def test_unit_refusals(where, value, needles, tmp_path):
    d = tiny()
    node = d["architecture"]
    for p in where[:-1]:
        node = node[p]
    node[where[-1]] = value
    path = tmp_path / "i.json"
    path.write_text(json.dumps(d))
    assert_input_error(cli("validate", path), str(path), *needles)
    assert_input_error(cli("evaluate", path, TINY_MAPPING), *needles)


def test_per_bit_energy_exact_per_word_is_accepted(tmp_path):
    """0.1 pJ/bit has no exact fJ per bit, but the level's 16-bit word costs exactly 1.6 pJ: accepted."""
    d = tiny()
    d["architecture"]["levels"][1]["read_pj"] = "0.1 pJ/bit"
    path = tmp_path / "i.json"
    path.write_text(json.dumps(d))
    proc = cli("validate", path)
    assert proc.returncode == 0 and '"0.1 pJ/bit" -> 1.6 pJ' in proc.stdout


YAML_REFUSALS = [
    ("name: a\nname: b\n", ("line 2", "key 'name' appears twice")),
    ("name: !!python/object/apply:os.system [echo hi]\n", ("line 1", "YAML tags (!!python/object/apply:os.system)")),
    ("name: !custom x\n", ("YAML tags (!custom)",)),
    ("a: &x [1, 2]\nb: [*x, *x]\n", ("line 2", "YAML aliases (*x)")),
    ("name: t\nsolver: {objective: energy, workers: on}\n", ("solver.workers", "unquoted on")),
    ("name: [\n", ("not valid YAML", "line 2")),
    ("- 1\n- 2\n", ("(top level)", "valid dictionary")),
    ("a: 1\n---\nb: 2\n", ("not valid YAML", "single document")),
    ("name: " + "[" * 5000 + "]" * 5000 + "\n", ("nested too deeply",)),
    ("workload: {ranks: {M: " + "9" * 40 + "}}\n", ("workload.ranks.M", "is too big")),
]


@pytest.mark.parametrize("text, needles", YAML_REFUSALS,
                         ids=["duplicate_key", "python_tag", "local_tag", "alias", "yes_no_on_off", "broken",
                              "top_level_list", "two_documents", "deep", "huge_int"])
def test_yaml_refusals(text, needles, tmp_path):
    path = tmp_path / "i.yaml"
    path.write_text(text)
    assert_input_error(cli("validate", path), str(path), *needles)
    assert_input_error(cli("evaluate", TINY, path), str(path), *needles)   # mapping files: the same reader


def test_a_billion_laughs_is_refused_at_once(tmp_path):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert_input_error(cli("validate", path), "YAML aliases (*a0)")


# ----------------------------------------------------------------------------------------------------------------
# YAML reads as exactly as JSON
# ----------------------------------------------------------------------------------------------------------------
def test_yaml_numbers_are_exact(tmp_path):
    import yaml
    d = tiny()
    d["architecture"]["levels"][1]["read_pj"] = "0.1"
    text = yaml.safe_dump(d, sort_keys=False).replace("read_pj: '0.1'", "read_pj: 0.1")
    assert "read_pj: 0.1\n" in text
    path = tmp_path / "t.yaml"
    path.write_text(text)
    inst = load_instance(path)
    assert inst.architecture.levels[1].read_pj == Decimal("0.1")   # not 0.1000000000000000055511151231257827


def test_yaml_scalars_resolve_as_json(tmp_path):
    """1:30 is not 90, 0x10 not 16, a date not a date: YAML 1.1's surprises stay strings for the spec to refuse."""
    from mapsolve.model.spec import JsonNumber
    from mapsolve.model.yaml_doc import read_yaml
    data = read_yaml("a: 1:30\nb: 0x10\nc: 2026-12-03\nd: 1.5\ne: 1e-3\nf: 7\ng: true\nh: ~\ni:\nj: '1.5'\n"
                     "k: .inf\nl: N\n", int)
    assert data == {"a": "1:30", "b": "0x10", "c": "2026-12-03", "d": "1.5", "e": "1e-3", "f": 7, "g": True,
                    "h": None, "i": None, "j": "1.5", "k": ".inf", "l": "N"}
    assert type(data["d"]) is JsonNumber and type(data["e"]) is JsonNumber and type(data["j"]) is str


def test_format_by_extension_or_content(tmp_path):
    twin = tmp_path / "inst.txt"        # no telling extension: YAML, because it does not start with {
    twin.write_text(FFN.read_text())
    assert load_instance(twin) == load_instance(FFN)
    as_json = tmp_path / "inst.conf"    # starts with {: JSON
    as_json.write_text(TINY.read_text())
    assert load_instance(as_json) == load_instance(TINY)
    yaml_in_json = tmp_path / "inst.json"
    yaml_in_json.write_text(FFN.read_text())
    with pytest.raises(InputError, match="not valid JSON"):
        load_instance(yaml_in_json)


def test_yaml_instance_and_its_json_twin_evaluate_identically(tmp_path):
    """The shipped YAML instance with units, and a JSON file of the exact values validate printed: same result,
    with the mapping read from YAML and from JSON."""
    inst = load_instance(FFN)
    twin = tmp_path / "edge_ffn_gelu.json"
    twin.write_text(json.dumps(inst.model_dump(mode="json"), indent=1))
    assert "GiB" not in json.dumps(json.loads(twin.read_text())["architecture"])   # the exact values only
    mapping_yaml = load_mapping(FFN_MAPPING)
    mapping_json = tmp_path / "m.json"
    mapping_json.write_text(json.dumps(mapping_yaml.model_dump(mode="json")))
    assert load_mapping(mapping_json) == mapping_yaml
    a = evaluate(inst, mapping_yaml)
    b = evaluate(load_instance(twin), load_mapping(mapping_json))
    assert a.to_json() == b.to_json()
    out_yaml = cli("evaluate", FFN, FFN_MAPPING, "--json")
    out_json = cli("evaluate", twin, mapping_json, "--json")
    assert out_yaml.returncode == out_json.returncode == 0
    assert json.loads(out_yaml.stdout) == json.loads(out_json.stdout)


def test_shipped_json_instance_as_yaml_evaluates_identically(tmp_path):
    import yaml
    for name in ("tiny_matmul", "tiny_attention", "tiny_chain", "tiny_online", "tiny_variants", "tiny_int8",
                 "tiny_nested", "tiny_block", "doc_example"):
        src = INSTANCES / f"{name}.json"
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(json.loads(src.read_text()), sort_keys=False))
        mapping = INSTANCES / f"{name}.mapping.json"
        a = cli("evaluate", src, mapping, "--json")
        b = cli("evaluate", path, mapping, "--json")
        assert a.returncode == b.returncode == 0 and a.stdout == b.stdout


def test_the_guide_shows_the_shipped_instance_and_what_validate_prints():
    """docs/guide.md quotes instances/edge_ffn_gelu.yaml whole and the output of `mapsolve validate` on it: both
    must stay what they are."""
    guide = (ROOT / "docs" / "guide.md").read_text()
    yaml_block = guide.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml_block == FFN.read_text()
    command = "$ mapsolve validate instances/edge_ffn_gelu.yaml\n"
    shown = guide.split(command, 1)[1].split("```", 1)[0]
    proc = cli("validate", "instances/edge_ffn_gelu.yaml") if Path.cwd() == ROOT else cli("validate", FFN)
    assert proc.returncode == 0
    assert shown == proc.stdout.replace(str(FFN), "instances/edge_ffn_gelu.yaml")


def test_the_schema_allows_a_quantity_wherever_one_is_converted():
    from mapsolve.model.quantities import _MODEL_OF
    proc = cli("schema", "instance")
    assert proc.returncode == 0
    defs = json.loads(proc.stdout)["$defs"]
    for pattern, kind in FIELDS:
        prop = defs[_MODEL_OF[pattern[:-1]]]["properties"][pattern[-1]]
        assert any(alt.get("type") == "string" and "quantity with units" in alt.get("description", "")
                   for alt in prop["anyOf"]), (pattern, prop)


def test_readme_lists_every_shipped_instance():
    readme = (ROOT / "README.md").read_text()
    shipped = sorted(p.name for ext in ("json", "yaml") for p in INSTANCES.glob(f"*.{ext}") if ".mapping." not in p.name)
    missing = [name for name in shipped if f"`{name}`" not in readme and name.replace(".json", "") + "*.json" not in readme]
    assert missing == []


# ----------------------------------------------------------------------------------------------------------------
# Any text in any quantity field: a conversion or one line, never a traceback
# ----------------------------------------------------------------------------------------------------------------
import yaml  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from mapsolve.model.quantities import ACCEPTS, _matches  # noqa: E402

UNIT_WORDS = sorted({w.strip() for text in ACCEPTS.values() for w in text.replace("(", ",").replace(")", ",")
                     .replace(" or ", ",").split(",") if w.strip() and len(w.strip()) < 12}
                    | {"GiB/s", "pJ/bit", "per cycle", "KB", "furlongs", "/", "", "B/h", "J/op", "bit/s"})
NUMBERS = ["0", "1", "-1", "7", "1/7", "1/0", "0.5", "1.05", "2.1e-12", "1e40", "1e41", "0.0001", "614", "3.9",
           "1e999999", ".5", "5.", "1_000", "\u0663", "NaN", "inf", " 16 "]


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_quantity_text_converts_or_is_refused_in_one_line(data, tmp_path):
    d = yaml.safe_load(FFN.read_text())   # its numbers are ints and unit texts: safe_load reads them as we do
    spots = [(p, kind) for pattern, kind in FIELDS for p, _ in _matches(d, pattern)]
    path, kind = data.draw(st.sampled_from(spots))
    text = data.draw(st.sampled_from(NUMBERS)) + data.draw(st.sampled_from(["", " "])) + \
        data.draw(st.sampled_from(UNIT_WORDS))
    node = d
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = text
    f = tmp_path / "q.json"
    f.write_text(json.dumps(d))
    proc = cli("validate", f)
    assert "Traceback" not in proc.stderr and proc.returncode in (0, 2), (text, proc.stderr)
    if proc.returncode == 2:
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("mapsolve: error: ")
    else:
        inst, conversions = read_instance(f)
        assert all(c.text != text or c.path == path for c in conversions)


def test_make_writes_yaml_for_a_yaml_name(tmp_path):
    """`mapsolve make ... -o X.yaml` writes YAML (decimals and fractions as quoted text, so nothing is rounded) that
    loads to the very instance the JSON output loads to."""
    from mapsolve.model import load_instance
    args = ["make", "attention", "--model", "bert", "--seq", "512", "--arch", "flat-edge", "--cascade", "all"]
    for name in ("b.yaml", "b.json"):
        cp = subprocess.run([sys.executable, "-m", "mapsolve.cli.main", *args, "-o", str(tmp_path / name)],
                            capture_output=True, text=True)
        assert cp.returncode == 0, cp.stderr
    text = (tmp_path / "b.yaml").read_text()
    assert not text.lstrip().startswith("{") and "name: bert_flat-edge_seq512_b1_all" in text
    assert load_instance(tmp_path / "b.yaml") == load_instance(tmp_path / "b.json")
