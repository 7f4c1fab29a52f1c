"""`sortctl users` and `sortctl hmi`: the users file (argon2id, mode 0600) and the first run."""

from __future__ import annotations

import argparse
import io
import json
import stat
import sys
from pathlib import Path

import pytest

from hmi import cli, users_cli
from hmi.users import Role, UserFile


def parse(module: object, argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    module.add_arguments(p)  # type: ignore[attr-defined]
    return p.parse_args(argv)


def users_cmd(argv: list[str], stdin: str = "", monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return int(users_cli.run(parse(users_cli, argv)))


def test_users_add_passwd_remove_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "u.json"
    assert users_cmd(["add", "ana", "--role", "operator", "--password-stdin", "--users", str(path)],
                     "s3cret-pass\n", monkeypatch) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = json.loads(path.read_text())
    assert raw["users"]["ana"]["hash"].startswith("$argon2id$") and "s3cret-pass" not in path.read_text()
    assert UserFile(path).verify("ana", "s3cret-pass") is not None
    assert UserFile(path).verify("ana", "wrong-pass") is None
    # a duplicate, a short password and a bad name are refused with a reason
    assert users_cmd(["add", "ana", "--role", "viewer", "--password-stdin", "--users", str(path)],
                     "another-pass\n", monkeypatch) == 2
    assert users_cmd(["add", "bo", "--role", "viewer", "--password-stdin", "--users", str(path)], "short\n",
                     monkeypatch) == 2
    assert users_cmd(["add", "../x", "--role", "viewer", "--password-stdin", "--users", str(path)],
                     "long-enough-1\n", monkeypatch) == 2
    err = capsys.readouterr().err
    assert "exists already" in err and "too short" in err and "bad user name" in err
    assert users_cmd(["passwd", "ana", "--role", "engineer", "--password-stdin", "--users", str(path)],
                     "new-pass-123\n", monkeypatch) == 0
    u = UserFile(path).verify("ana", "new-pass-123")
    assert u is not None and u.role is Role.ENGINEER
    capsys.readouterr()
    assert users_cmd(["list", "--json", "--users", str(path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "ana" and listed[0]["role"] == "engineer" and "hash" not in listed[0]
    assert users_cmd(["remove", "ana", "--users", str(path)]) == 0
    assert UserFile(path).load() == {}
    assert users_cmd(["remove", "ana", "--users", str(path)]) == 2


def test_users_file_defaults_beside_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "var" / "events.sqlite"
    assert users_cmd(["add", "ana", "--role", "viewer", "--password-stdin", "--db", str(db)], "pass-word-9\n",
                     monkeypatch) == 0
    assert (tmp_path / "var" / "hmi-users.json").exists()


def test_password_prompt_asks_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["first-pass-1", "other-pass-2"])
    monkeypatch.setattr(users_cli.getpass, "getpass", lambda _prompt: next(answers))
    assert users_cmd(["add", "ana", "--role", "viewer", "--users", str(tmp_path / "u.json")]) == 2
    assert UserFile(tmp_path / "u.json").load() == {}


def test_first_run_without_users_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "events.sqlite"
    args = parse(cli, ["--db", str(db), "--listen", "127.0.0.1:0"])
    assert cli.run(args) == 2
    err = capsys.readouterr().err
    users = tmp_path / "hmi-users.json"
    assert f"no HMI users in {users}" in err
    assert f"sortctl users add NAME --role engineer --users {users}" in err


def test_listen_address_parsing() -> None:
    assert cli.parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert cli.parse_listen("[::1]:0") == ("::1", 0)
    assert cli.parse_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)
    for bad in ("8080", ":8080", "host:", "host:99999", "host:http"):
        with pytest.raises(ValueError):
            cli.parse_listen(bad)
