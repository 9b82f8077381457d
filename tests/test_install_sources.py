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


class _Server:
    """Serves the gateway's directory over http on loopback; "/cut/NAME" sends half of NAME,
    then closes. Counts the requests."""

    def __init__(self, root: Path) -> None:
        import http.server
        import threading

        served = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                served.requests += 1
                if not self.path.startswith("/cut/"):
                    return super().do_GET()
                data = (root / self.path.removeprefix("/cut/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:len(data) // 2])
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served(gateway: Gateway):
    gateway.config_path.write_text(gateway.config_path.read_text() + "\n[download]\nmax_attempts = 1\n")
    server = _Server(gateway.root)
    yield server
    server.close()


def install_url(gateway: Gateway, url: str, *options: str) -> int:
    return main(["install", url, "--config", str(gateway.config_path), *options])


def test_a_bundle_url_streams_into_the_slot_and_a_broken_one_fails_before_the_switch(
        gateway: Gateway, served: _Server, capsys) -> None:
    state = gateway.root / "state"
    assert install_url(gateway, f"{served.url}/{gateway.bundle('u2', sequence=2).name}") == 0
    assert sorted(p.name for p in state.iterdir()) == ["journal.json", "lock", "simulated-boot-id"]
    u3 = gateway.bundle("u3", sequence=3, seed=3)
    assert install_url(gateway, f"{served.url}/cut/{u3.name}") == 1       # the stream breaks off
    assert "download" in capsys.readouterr().out
    assert journal_update(gateway) is None and gateway.booted() == "B"
    assert not (state / "incoming").exists()


def test_a_streamed_bundle_is_not_read_after_the_switch(gateway: Gateway, served: _Server, capsys) -> None:
    """With --no-reboot the update waits after the switch: the slot holds the bundle's payload
    and the journal its manifest; the bundle is not fetched again."""
    assert install_url(gateway, f"{served.url}/{gateway.bundle('u2', sequence=2).name}", "--no-reboot") == 0
    assert journal_update(gateway)["state"] == "reboot" and served.requests == 1
    gateway.power_cycle()
    assert main(["commit", "--config", str(gateway.config_path)]) == 0
    assert "committed, version 2.0.0" in capsys.readouterr().out
    assert served.requests == 1


def test_earlier_downloads_are_removed_unless_the_update_in_flight_reads_them(gateway: Gateway,
                                                                              served: _Server) -> None:
    import shutil

    incoming = gateway.root / "state/incoming"
    incoming.mkdir(parents=True)
    in_flight = incoming / "install-5.fwb"
    shutil.copy(gateway.bundle("u2", sequence=2), in_flight)
    assert gateway.installer().install(str(in_flight), no_reboot=True).result == "pending"
    for name in ("install-1.fwb", "bundle-2.fwb"):       # left by a download cut short, by an earlier version
        (incoming / name).write_bytes(b"partial")
    (incoming / "action-0123456789abcdef").mkdir()       # the daemon's: not for 'install URL' to touch
    assert install_url(gateway, f"{served.url}/u2.fwb") == 2       # busy: an update is in flight
    assert served.requests == 0
    assert sorted(p.name for p in incoming.iterdir()) == ["action-0123456789abcdef", "install-5.fwb"]


def journal_update(gateway: Gateway) -> dict | None:
    import json
    return json.loads((gateway.root / "state/journal.json").read_text())["update"]
