"""config/ files carry their schema version (`pantau_config: N`); a file written for
another schema fails at start with its file, line and what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from pantau.city import load_city
from pantau.devices import default_config_dir
from pantau.errors import ConfigError
from pantau.yamlconf import CONFIG_SCHEMA, VERSION_KEY, check_schema, read_yaml

KPI = """\
# targets
pantau_config: {version}
availability_bucket_minutes: 10
"""


def test_every_shipped_config_file_says_the_current_schema() -> None:
    for path in sorted(default_config_dir().glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert f"\n{VERSION_KEY}: {CONFIG_SCHEMA} " in text, path
    load_city(default_config_dir())  # and the key is not an unknown key to any model


def test_the_version_key_is_dropped_before_the_model_sees_it(tmp_path: Path) -> None:
    path = tmp_path / "kpi.yaml"
    path.write_text(KPI.format(version=CONFIG_SCHEMA))
    doc = read_yaml(path)
    assert doc.data == {"availability_bucket_minutes": 10}
    path.write_text("availability_bucket_minutes: 10\n")  # no key: the first schema
    assert read_yaml(path).data == {"availability_bucket_minutes": 10}


def test_a_newer_or_malformed_version_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "kpi.yaml"
    path.write_text(KPI.format(version=CONFIG_SCHEMA + 1))
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    assert str(err.value).startswith(f"{path}:2: {VERSION_KEY}: {CONFIG_SCHEMA + 1} is newer")
    assert "upgrade Pantau" in str(err.value)
    path.write_text(KPI.format(version='"one"'))
    with pytest.raises(ConfigError, match=r"kpi.yaml:2: pantau_config: a whole number"):
        read_yaml(path)


def test_an_old_file_is_told_what_to_change(tmp_path: Path) -> None:
    """As a release that bumps the schema would: schema 3 renamed keys in 2 and 3."""
    path = tmp_path / "rules.yaml"
    path.write_text("# my rules\n\npantau_config: 1\nrules: []\n")
    changes = {2: "rules.yaml: `for:` is now `hold:`", 3: "sla.yaml: minutes, not hours"}
    doc = read_yaml(path)  # schema 1 is today's: accepted
    doc.data[VERSION_KEY] = 1
    doc.lines[(VERSION_KEY,)] = 3
    with pytest.raises(ConfigError) as err:
        check_schema(doc, current=3, changes=changes)
    message = str(err.value)
    assert message.startswith(f"{path}:3: pantau_config: 1 is an old config schema")
    assert "for 2: rules.yaml: `for:` is now `hold:`" in message
    assert "for 3: sla.yaml: minutes, not hours" in message
    assert message.endswith("then set pantau_config: 3")
