"""The version a server shows for a bundle is the version the device reports once it runs it:
both are the signed manifest's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.bundle.reader import bundle_info
from agent.cli import main

SPEC = ('sequence = 3\nvendor_domain = "example.com"\nclass_name = "gw-test"\n\n'
        '[[component]]\nid = ["rootfs"]\nfile = "rootfs.img"\nuri = "#rootfs.img"\n{version}')


def make_manifest(work: Path, capsys: pytest.CaptureFixture[str], version: str | None) -> tuple[Path, str]:
    """A signed manifest whose rootfs component has ``version`` (none: no version); the warnings
    ``manifest create`` printed."""
    (work / "rootfs.img").write_bytes(b"\x5a" * 200_000)
    (work / "spec.toml").write_text(SPEC.format(version=f'version = "{version}"\n' if version else ""))
    assert main(["manifest", "keygen", "--out", str(work / "k.pem")]) == 0
    assert main(["manifest", "create", str(work / "spec.toml"), "--out", str(work / "m.suit")]) == 0
    assert main(["manifest", "sign", str(work / "m.suit"), "--key", str(work / "k.pem"),
                 "--out", str(work / "s.suit")]) == 0
    return work / "s.suit", capsys.readouterr().err


def create(work: Path, signed: Path, *extra: str) -> int:
    return main(["bundle", "create", "--manifest", str(signed), str(work / "rootfs.img"),
                 "--out", str(work / "u.fwb"), *extra])


def test_the_bundle_takes_the_manifests_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signed, warnings = make_manifest(tmp_path, capsys, "1.2.0")
    assert warnings == ""
    assert create(tmp_path, signed) == 0
    assert "version 1.2.0" in capsys.readouterr().out
    info = bundle_info(tmp_path / "u.fwb")
    assert info["sw_description_version"] == "1.2.0"


def test_the_same_version_given_again_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    signed, _ = make_manifest(tmp_path, capsys, "1.2.0")
    assert create(tmp_path, signed, "--version", "1.2.0") == 0
    assert bundle_info(tmp_path / "u.fwb")["sw_description_version"] == "1.2.0"


def test_a_version_that_differs_from_the_manifests_is_refused(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    signed, _ = make_manifest(tmp_path, capsys, "1.2.0")
    assert create(tmp_path, signed, "--version", "1.3.0") != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bundle-version" in err
    assert "--version 1.3.0 is not the manifest's version 1.2.0" in err
    assert not (tmp_path / "u.fwb").exists()


def test_a_manifest_without_a_version_warns_and_needs_one_given(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    signed, warnings = make_manifest(tmp_path, capsys, None)
    assert "warning: component ['rootfs'] goes to a slot and has no version" in warnings
    assert create(tmp_path, signed) != 0
    err = capsys.readouterr().err
    assert "bundle-version" in err and "no --version was given" in err
    assert not (tmp_path / "u.fwb").exists()
    assert create(tmp_path, signed, "--version", "1.2.0") == 0
    err = capsys.readouterr().err
    assert "warning: the manifest gives no component a version: servers will show 1.2.0" in err
    assert bundle_info(tmp_path / "u.fwb")["sw_description_version"] == "1.2.0"


def test_the_device_reports_the_version_the_server_shows(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Installed on a gateway (file-backed slots) and committed after the reboot, the update's
    version as the device reports it is the bundle's."""
    from install_bench import make_gateway

    gateway = make_gateway(tmp_path / "gw")
    make_manifest(tmp_path, capsys, "2.4.1")
    signed = tmp_path / "s-release.suit"
    assert main(["manifest", "sign", str(tmp_path / "m.suit"), "--key", str(gateway.root / "release.pem"),
                 "--out", str(signed)]) == 0
    assert create(tmp_path, signed) == 0
    shown = bundle_info(tmp_path / "u.fwb")["sw_description_version"]
    config = ["--config", str(gateway.config_path)]
    assert main(["install", str(tmp_path / "u.fwb"), "--no-reboot", *config]) == 0
    gateway.power_cycle()
    assert main(["commit", *config]) == 0
    capsys.readouterr()
    assert main(["status", "--json", *config]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["booted"] == "B"
    assert shown == "2.4.1" and status["installed"]["version"] == shown == status["slots"]["B"]["version"]
