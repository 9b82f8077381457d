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


def test_a_device_is_refused_before_the_journal_records_an_update(gateway: Gateway, capsys) -> None:
    assert main(["install", "/dev/zero", "--config", str(gateway.config_path)]) == 1
    err = capsys.readouterr().err
    assert err == "error: source-not-file: /dev/zero: not a regular file; an update is read from a file\n"
    assert not (gateway.root / "state/journal.json").exists()


def test_a_fifo_is_refused_without_waiting_for_a_writer(gateway: Gateway) -> None:
    import os
    import subprocess
    import sys

    fifo = gateway.root / "update.fifo"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "agent", "install", str(fifo), "--config", str(gateway.config_path)],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (1, f"error: source-not-file: {fifo}: not a regular file; an update "
                                                 "is read from a file\n")
    assert not (gateway.root / "state/journal.json").exists()


def test_a_huge_sparse_manifest_file_fails_the_update_at_once(gateway: Gateway) -> None:
    huge = gateway.root / "huge.suit"
    with open(huge, "wb") as sparse:
        sparse.truncate(16 << 30)
    outcome = gateway.installer().install(str(huge))
    assert (outcome.result, outcome.state, outcome.code) == ("failure", "failed", "cbor-too-large")
    assert outcome.reason == f"{huge}: more than the limit of 65536 bytes for a manifest"


def test_read_input_reads_at_most_one_byte_more_than_its_limit(tmp_path: Path) -> None:
    import os
    import threading

    from agent.errors import ManifestError
    from agent.files import read_input

    with pytest.raises(ManifestError, match="/dev/zero: more than the limit of 1000 bytes for a manifest") as err:
        read_input(Path("/dev/zero"), "manifest", 1000)
    assert err.value.code == "cbor-too-large"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for size, fits in ((1000, True), (1001, False)):
        def feed(size: int = size) -> None:
            try:
                with open(fifo, "wb") as writer:
                    writer.write(b"m" * size)
            except BrokenPipeError:        # the reader stopped at limit + 1 bytes
                pass
        writer = threading.Thread(target=feed)
        writer.start()
        try:
            if fits:
                assert read_input(fifo, "manifest", 1000) == b"m" * 1000
            else:
                with pytest.raises(ManifestError, match="more than the limit of 1000 bytes"):
                    read_input(fifo, "manifest", 1000)
        finally:
            writer.join(10)
