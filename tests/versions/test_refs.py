"""Version references and settings parsing, without a server."""

from __future__ import annotations

import pytest

from dvidql.config import Mode, load_settings
from dvidql.errors import BadRequest, InvalidRef
from dvidql.versions.refs import VersionRef, parse_ref


@pytest.mark.parametrize(("text", "expected"), [
    ("3fa2", VersionRef("3fa2")),
    ("3fa2:master", VersionRef("3fa2", "master")),
    (":dev", VersionRef("", "dev")),
    ("3fa2:dev~3", VersionRef("3fa2", "dev", 3)),
    ("release-1.0", VersionRef("release-1.0")),
])
def test_parse_ref(text: str, expected: VersionRef) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["", "3fa2~1", "3f$a", "3fa2:", "3fa2:dev~x", "a:b~1~2"])
def test_malformed_refs(text: str) -> None:
    with pytest.raises(InvalidRef):
        parse_ref(text)


def test_settings_precedence(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "c.toml"
    config.write_text('data = "store"\nnote = "file"\nport = 9000\n[server]\nmode = "readonly"\n')
    monkeypatch.setenv("DVIDQL_NOTE", "env")
    settings = load_settings(config, port=9100)
    assert settings.data == tmp_path / "store"  # relative to the config file
    assert settings.note == "env" and settings.port == 9100 and settings.mode is Mode.READONLY
    config.write_text("port = 'not a number'\n")
    with pytest.raises(BadRequest, match="port"):
        load_settings(config)
    with pytest.raises(BadRequest, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
