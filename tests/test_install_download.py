"""An install whose payload comes over http: killed mid-download, it resumes where it was.

The manifest's URI points at a real nginx (through a counting proxy). The install
runs in a subprocess that SIGKILLs itself after 20 MiB have reached the slot;
``fwagent run`` then continues from the last durable checkpoint (at least every 8 MiB)
with a Range request, and the slot ends bit-exact.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.cli import main
from agent.manifest import cose
from agent.manifest.sign import add_signature
from agent.manifest.spec import build_manifest, parse_spec, unsigned_envelope
from httpfaults import FaultProxy, nginx_server, random_file, require_nginx
from install_bench import make_gateway

RUNNER = Path(__file__).with_name("crash_runner.py")
SIZE = 24 << 20
CUT = 20 << 20
CHECKPOINT = 16 << 20


def test_killed_download_resumes_and_the_slot_is_bit_exact(tmp_path: Path) -> None:
    require_nginx()
    gateway = make_gateway(tmp_path / "gw")
    for name in ("rootfs-a.img", "rootfs-b.img"):
        with open(gateway.root / name, "r+b") as stream:
            stream.truncate(32 << 20)
    www = tmp_path / "www"
    www.mkdir()
    random_file(www / "image.img", SIZE, seed=3)
    image = (www / "image.img").read_bytes()
    with nginx_server(www, tmp_path / "nginx") as server, FaultProxy(server.port) as proxy:
        (gateway.root / "image.img").write_bytes(image)     # the device maker's copy, to hash
        spec = parse_spec({"sequence": 2, "vendor_domain": "example.com", "class_name": "gw-test",
                           "component": [{"id": ["rootfs"], "file": "image.img",
                                          "uri": f"{proxy.url}/image.img"}]}, gateway.root)
        signed = add_signature(unsigned_envelope(build_manifest(spec)),
                               cose.load_private_key(gateway.root / "release.pem"))
        manifest = gateway.root / "update.suit"
        manifest.write_bytes(signed)

        killed = subprocess.run([sys.executable, str(RUNNER), "bytes", str(CUT), "--", "install", str(manifest),
                                 "--config", str(gateway.config_path)], capture_output=True, text=True, timeout=120)
        assert killed.returncode == -9, killed.stderr
        journal = json.loads((gateway.root / "state/journal.json").read_text())
        checkpoint = journal["update"]["downloads"]["rootfs.B"]
        offset = checkpoint["offset"]
        assert journal["update"]["state"] == "write" and CHECKPOINT <= offset < CUT

        gateway.power_cycle()                                  # the cut was a power cut
        served_before = proxy.bytes_served
        assert main(["run", "--config", str(gateway.config_path)]) == 0

        resumed = proxy.requests[-1].headers
        assert resumed["Range"] == f"bytes={offset}-" and resumed["If-Range"] == checkpoint["validator"]
        assert proxy.bytes_served - served_before == SIZE - offset         # only what was not durable yet
    assert gateway.booted() == "B"
    assert (gateway.root / "rootfs-b.img").read_bytes()[:SIZE] == image
    record = json.loads((gateway.root / "state/journal.json").read_text())
    assert [o["result"] for o in record["outbox"]] == ["success"]
