"""What an install reads: a bundle is checked to its end as `fwagent bundle verify` checks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.bundle.cpio import encode_header, pad4, trailer
from agent.cli import main
from install_bench import Gateway, make_gateway


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return make_gateway(tmp_path)


def member(name: str, data: bytes) -> bytes:
    return encode_header(name, len(data), fmt="newc") + data + bytes(pad4(len(data)) - len(data))


def malformed(gateway: Gateway, kind: str) -> Path:
    """The gateway's signed u2 bundle with something wrong after its last payload."""
    good = gateway.bundle("u2", sequence=2).read_bytes()
    image = (gateway.root / "u2.img").read_bytes()
    body = good[:-len(trailer("newc"))]           # sw-description, manifest, u2.img
    data = {
        "duplicate-payload": body + member("u2.img", image) + trailer("newc"),
        "unknown-member": body + member("notes.txt", b"hello") + trailer("newc"),
        "bytes-after-trailer": good + b"x",
        "no-trailer": body,
        "trailer-cut-short": good[:-10],
    }[kind]
    path = gateway.root / f"{kind}.fwb"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind, code", [
    ("duplicate-payload", "bundle-duplicate-member"),
    ("unknown-member", "bundle-unknown-member"),
    ("bytes-after-trailer", "bundle-trailing-data"),
    ("no-trailer", "bundle-truncated"),
    ("trailer-cut-short", "bundle-truncated"),
])
def test_install_refuses_what_bundle_verify_refuses(gateway: Gateway, capsys, kind: str, code: str) -> None:
    bundle = malformed(gateway, kind)
    assert main(["bundle", "verify", str(bundle), "--trust", str(gateway.root / "release.pub.pem")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {code}: ")
    steps: list[str] = []
    installer = gateway.installer()
    installer.on_step = lambda state, _update: steps.append(state)
    outcome = installer.install(str(bundle))
    assert (outcome.result, outcome.state, outcome.code) == ("failure", "failed", code)
    assert "switch" not in steps
    boot = gateway.bootloader()
    assert boot.get_primary() == "A" and not boot.get_state("B") and gateway.booted() == "A"
    assert gateway.installer().boot.boot_id() == "0"        # never rebooted
    assert main(["install", str(bundle), "--config", str(gateway.config_path)]) == 1
    assert capsys.readouterr().out.split(": ")[1:3] == ["failed", code]
