"""The device maker's manifest tools, end to end through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import ConfigError
from agent.manifest.spec import load_spec

VENDOR = uuid.uuid5(uuid.NAMESPACE_DNS, "example.com")
CLASS = uuid.uuid5(VENDOR, "gw-board-rev1")
IDENTITY = ["--vendor-id", str(VENDOR), "--class-id", str(CLASS)]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "rootfs.img").write_bytes(b"\x5a" * 300_000)
    (tmp_path / "spec.toml").write_text(
        'sequence = 7\nvendor_domain = "example.com"\nclass_name = "gw-board-rev1"\n'
        'description = "Gateway 1.2.0"\n\n[[component]]\nid = ["rootfs"]\nfile = "rootfs.img"\n'
        'uri = "#rootfs.img"\nversion = "1.2.0"\n')
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def make_signed(work: Path, capsys: pytest.CaptureFixture[str], alg: str = "es256") -> Path:
    assert run(capsys, "manifest", "keygen", "--alg", alg, "--out", work / "k.pem")[0] == 0
    assert run(capsys, "manifest", "create", work / "spec.toml", "--out", work / "m.suit")[0] == 0
    assert run(capsys, "manifest", "sign", work / "m.suit", "--key", work / "k.pem",
               "--out", work / "s.suit")[0] == 0
    return work / "s.suit"


@pytest.mark.parametrize("alg", ["es256", "ed25519"])
def test_keygen_create_sign_verify(work: Path, capsys: pytest.CaptureFixture[str], alg: str) -> None:
    signed = make_signed(work, capsys, alg)
    assert (work / "k.pem").stat().st_mode & 0o777 == 0o600
    code, out, _ = run(capsys, "manifest", "verify", signed, "--trust", work / "k.pub.pem", *IDENTITY)
    assert code == 0, out
    assert out.splitlines()[-1] == "accepted"
    assert "fetch ['rootfs'] -> gateway A/B slot class 'rootfs' #rootfs.img, 300000 bytes" in out


def test_verify_json_lists_actions(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signed = make_signed(work, capsys)
    code, out, _ = run(capsys, "manifest", "verify", signed, "--trust", work / "k.pub.pem", *IDENTITY,
                       "--json")
    assert code == 0
    view = json.loads(out)
    assert view["accepted"] is True and view["sequence"] == 7
    fetch = [a for a in view["actions"] if a["action"] == "fetch"]
    assert fetch == [{"sequence": "install", "action": "fetch", "component": "['rootfs']",
                      "target": "gateway A/B slot class 'rootfs'", "uri": "#rootfs.img",
                      "digest": fetch[0]["digest"], "size": 300_000, "integrated": False}]
    assert view["components"][0]["component-version"] == "1.2.0"


@pytest.mark.parametrize("extra, reason", [
    (["--vendor-id", "0b8b6a3c-1d2e-5f00-9a00-000000000000", "--class-id", str(CLASS)], "vendor-mismatch"),
    (["--vendor-id", str(VENDOR), "--class-id", str(uuid.uuid5(VENDOR, "other"))], "class-mismatch"),
    ([*IDENTITY, "--sequence", "8"], "rollback"),
    ([*IDENTITY, "--sequence", "7"], "rollback"),
])
def test_verify_rejects_with_reason_last(work: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                         reason: str) -> None:
    signed = make_signed(work, capsys)
    code, out, _ = run(capsys, "manifest", "verify", signed, "--trust", work / "k.pub.pem", *extra)
    assert code == 1
    assert out.splitlines()[-1].startswith(f"rejected: {reason}: ")


def test_unsigned_and_untrusted_are_rejected(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_signed(work, capsys)
    code, out, _ = run(capsys, "manifest", "verify", work / "m.suit", "--trust", work / "k.pub.pem")
    assert (code, out.splitlines()[-1].split(":")[0:2]) == (1, ["rejected", " no-authentication"])
    run(capsys, "manifest", "keygen", "--out", work / "other.pem")
    code, out, _ = run(capsys, "manifest", "verify", work / "s.suit", "--trust", work / "other.pub.pem")
    assert code == 1 and out.splitlines()[-1].startswith("rejected: untrusted-signer: ")


def test_second_signature_for_key_rotation(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signed = make_signed(work, capsys)
    run(capsys, "manifest", "keygen", "--alg", "ed25519", "--out", work / "new.pem")
    code, _, _ = run(capsys, "manifest", "sign", signed, "--key", work / "new.pem", "--kid", "release-2",
                     "--out", work / "s2.suit")
    assert code == 0
    for trusted in ("k.pub.pem", "new.pub.pem"):
        code, out, _ = run(capsys, "manifest", "verify", work / "s2.suit", "--trust", work / trusted)
        assert code == 0, out
    code, out, _ = run(capsys, "manifest", "show", work / "s2.suit", "--json")
    blocks = json.loads(out)["authentication"]
    assert [(b["algorithm"], b["kid"]) for b in blocks][1] == ("Ed25519", b"release-2".hex())
    assert blocks[0]["algorithm"] == "ESP256"


def test_verify_json_rejection_keeps_stdout_json(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_signed(work, capsys)
    code, out, err = run(capsys, "manifest", "verify", work / "m.suit", "--trust", work / "k.pub.pem",
                         "--json")
    assert code == 1
    assert json.loads(out) == {"accepted": False, "reason": "no-authentication",
                               "detail": "the authentication wrapper holds a digest but no signature or MAC"}
    assert err.startswith("rejected: no-authentication: ")


def test_show_says_signatures_are_not_verified(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signed = make_signed(work, capsys)
    code, out, _ = run(capsys, "manifest", "show", signed)
    assert code == 0
    assert "sequence number: 7" in out and "signatures not verified" in out
    assert json.loads(run(capsys, "manifest", "show", signed, "--json")[1])["verified"] is False


@pytest.mark.parametrize("argv, code, message", [
    (["manifest", "verify", "missing.suit", "--trust", "k.pub.pem"], 1, "error: file: missing.suit: "),
    (["manifest", "verify", "s.suit", "--trust", "missing.pem"], 1, "error: key: missing.pem: "),
    (["manifest", "verify", "s.suit"], 2, "error: usage: give at least one --trust"),
    (["manifest", "verify", "s.suit", "--trust", "k.pub.pem", "--vendor-id", "nope"], 2,
     "error: usage: --vendor-id: 'nope' is not a UUID"),
    (["manifest", "sign", "s.suit", "--key", "k.pub.pem", "--out", "x.suit"], 1, "error: key: "),
    (["manifest", "keygen", "--out", "k.pem"], 2, "error: usage: "),
])
def test_user_errors_are_one_line(work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                  argv: list[str], code: int, message: str) -> None:
    make_signed(work, capsys)
    monkeypatch.chdir(work)
    got, out, err = run(capsys, *argv)
    assert got == code
    assert err.startswith(message), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_python_dash_m_agent_is_the_same_command(work: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "agent", "manifest", "create", str(work / "spec.toml"),
                             "--out", str(work / "m.suit")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (work / "m.suit").stat().st_size > 100


@pytest.mark.parametrize("text, message", [
    ('sequence = 1\nvendor_domain = "a"\nclass_name = "b"\ncolour = 1\n', "unknown key 'colour'"),
    ('sequence = "1"\nvendor_domain = "a"\nclass_name = "b"\n', "'sequence' must be of type int"),
    ('sequence = 1\nvendor_id = "not-a-uuid"\nclass_name = "b"\n', "is not a UUID"),
    ('sequence = 1\nvendor_domain = "a"\nvendor_id = "%s"\nclass_name = "b"\n' % VENDOR, "exactly one of"),
    ('sequence = 1\nvendor_domain = "a"\nclass_name = "b"\n', "at least one [[component]]"),
    ('sequence = 1\nvendor_domain = "a"\nclass_name = "b"\n[[component]]\nid = ["x"]\nfile = "f"\n'
     'uri = "ftp://x"\n', "must be http(s)://... or #name"),
    ('sequence = 1\nvendor_domain = "a"\nclass_name = "b"\n[[component]]\nid = ["x"]\nfile = "f"\n'
     'uri = "#f"\nslots = 1\n', "unknown key 'slots'"),
])
def test_spec_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.").replace("*", r"\*")):
        load_spec(spec)


def test_spec_identity_is_uuid5_of_domain_and_class(work: Path) -> None:
    spec = load_spec(work / "spec.toml")
    assert (spec.vendor_id, spec.class_id) == (VENDOR, CLASS)
    assert spec.components[0].file == work / "rootfs.img"
