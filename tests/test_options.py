"""Declared options: one validation for every target's -O options and every runner's runtime options, listed by
`mait-deploy targets`."""

import json
import subprocess
import sys

import pytest

from mait_deploy import backends
from mait_deploy.cli.app import parse_key_values
from mait_deploy.device.runner import runner_class
from mait_deploy.errors import UnsupportedOption
from mait_deploy.options import Option, validate

DECLARED = (
    Option("flag", bool, True, "a switch"),
    Option("count", int, None, "a count", minimum=1),
    Option("mode", str, "a", "a choice", choices=("a", "b"), note="see the docs"),
    Option("scale", float, 1.0, "a number", precisions=("int8",)),
)


def test_defaults_fill_in_and_given_values_are_checked():
    assert validate(DECLARED, {}, "target t") == {"flag": True, "count": None, "mode": "a", "scale": 1.0}
    assert validate(DECLARED, {"count": 3, "scale": 2}, "target t", "int8")["scale"] == 2.0


@pytest.mark.parametrize("values,precision,message", [
    ({"nope": 1}, None, r"target t has no option\(s\) nope \(it takes: flag, count, mode, scale\)"),
    ({"flag": 1}, None, "flag takes true/false"),
    ({"count": True}, None, "count takes an integer"),
    ({"count": "3"}, None, "count takes an integer"),
    ({"count": 0}, None, "count must be >= 1"),
    ({"mode": "c"}, None, r"-O mode='c': use one of a, b \(see the docs\)"),
    ({"scale": 2.0}, "fp32", "-O scale applies to int8 only"),
])
def test_every_refusal_is_one_line_naming_the_option(values, precision, message):
    with pytest.raises(UnsupportedOption, match=message):
        validate(DECLARED, values, "target t", precision)


def test_a_key_given_twice_is_an_error():
    assert parse_key_values(["a=1", "b=true", "c=text"]) == {"a": 1, "b": True, "c": "text"}
    with pytest.raises(UnsupportedOption, match=r"-O device is given twice \('CPU' and 'GPU'\)"):
        parse_key_values(["device=CPU", "device=GPU"])
    with pytest.raises(UnsupportedOption, match="expected KEY=VALUE"):
        parse_key_values(["=3"])


@pytest.mark.parametrize("name", backends.names())
def test_each_runner_checks_its_runtime_options(name, tmp_path):
    runner = runner_class(name)
    declared = {option.name for option in runner.declared_options}
    assert all(option.help for option in runner.declared_options)
    with pytest.raises(UnsupportedOption, match=f"the {name} runner has no option"):
        validate(runner.declared_options, {"no_such_option": 1}, f"the {name} runner", flag="runtime option")
    assert len(declared) == len(runner.declared_options)


def test_targets_json_lists_every_option_with_type_default_and_help():
    done = subprocess.run([sys.executable, "-m", "mait_deploy.cli", "targets", "--json"], capture_output=True,
                          text=True, check=True)
    rows = {row["target"]: row for row in json.loads(done.stdout)}
    assert set(rows) == set(backends.names())
    for row in rows.values():
        assert row["build_here"] and row["run_here"]
        for option in row["compile_options"] + row["runtime_options"]:
            assert {"name", "type", "default", "help", "choices", "minimum", "precisions"} <= set(option)
            assert option["help"]
    assert {o["name"]: o["default"] for o in rows["openvino"]["compile_options"]}["device"] == "CPU"
    assert "bool" in {o["type"] for o in rows["onnxruntime"]["compile_options"]}
