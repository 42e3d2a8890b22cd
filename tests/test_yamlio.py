"""YAML reading: every key's line, and mistakes that name the file and line."""

import pytest

from gsam_repro.errors import ConfigError
from gsam_repro.yamlio import parse_override, parse_yaml

SPEC = """\
name: x
base:
  optimizer:
    name: gsam
    rho_max: 0.05
grid:
  seed: [0, 1]
"""


def test_lines_of_nested_keys_and_list_items():
    data, lines = parse_yaml(SPEC, "spec.yaml")
    assert data["base"]["optimizer"]["rho_max"] == 0.05
    assert lines["base.optimizer.rho_max"] == 5
    assert lines["grid.seed"] == 7
    assert lines.line("base.optimizer.unknown_key") == 3  # falls back to the enclosing key


def test_a_key_given_twice_is_an_error_naming_both_lines():
    text = "executor: {cluster: local}\nseeds: 2\nexecutor: {cluster: slurm}\n"
    with pytest.raises(ConfigError) as err:
        parse_yaml(text, "spec.yaml")
    assert "spec.yaml:3: executor: given twice (lines 1 and 3)" == str(err.value)


def test_invalid_yaml_names_the_line():
    with pytest.raises(ConfigError, match=r"spec.yaml:2: invalid YAML"):
        parse_yaml("a: 1\nb: c: d\n", "spec.yaml")


def test_overrides_read_values_as_yaml():
    assert parse_override("optimizer.lr=5e-2") == ("optimizer.lr", "5e-2")  # YAML 1.1 text
    assert parse_override("seeds=[0, 7]") == ("seeds", [0, 7])
    assert parse_override("train.deterministic=true") == ("train.deterministic", True)


def test_a_spec_that_is_not_utf8_is_a_config_error_naming_file_and_offset(tmp_path):
    from gsam_repro.sweep.spec import load_spec

    path = tmp_path / "spec.yaml"
    path.write_bytes(b"name: x\n# caf\xc3\xa9 is fine, \xff is not\n")
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert str(err.value) == f"{path}:2: not UTF-8 text: byte 0xff at byte offset 25"
