"""The delta option of a manifest spec, and what the tools show of it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import zstandard

from agent.cli import main
from agent.delta.frames import decode_index, frame_id
from agent.delta.param import delta_references
from agent.errors import ConfigError
from agent.manifest.spec import parse_spec
from install_bench import SLOT_SIZE, make_gateway

SPEC = """\
sequence = 2
vendor_domain = "example.com"
class_name = "gw-test"

[[component]]
id = ["rootfs"]
file = "rootfs.img"
uri = "#rootfs.img"
version = "2.0"
delta = true
"""


def _release(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[bytes, Path]:
    image = random.Random(5).randbytes(100_000) + bytes(SLOT_SIZE // 2)
    (root / "rootfs.img").write_bytes(image)
    (root / "spec.toml").write_text(SPEC)
    assert main(["manifest", "create", str(root / "spec.toml"), "--out", str(root / "u.suit")]) == 0
    assert "rootfs.img.frames" in capsys.readouterr().out
    assert main(["manifest", "sign", str(root / "u.suit"), "--key", str(root / "release.pem"),
                 "--out", str(root / "s.suit")]) == 0
    return image, root / "s.suit"


def test_manifest_create_writes_frames_and_index_the_manifest_names(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    gateway = make_gateway(tmp_path / "gw")
    image, signed = _release(gateway.root, capsys)
    refs = delta_references(signed.read_bytes())
    ref = refs[(b"rootfs",)]
    assert (ref.frames.uri, ref.index.uri) == ("#rootfs.img.frames", "#rootfs.img.index")
    frames = (gateway.root / "rootfs.img.frames").read_bytes()
    index = decode_index((gateway.root / "rootfs.img.index").read_bytes(), image_size=len(image),
                         frames_size=len(frames))
    assert ref.frames.size == len(frames) and ref.index.size == (gateway.root / "rootfs.img.index").stat().st_size
    assert index.frame_size == 16384 and ref.index.size < len(image) * 0.0025
    plain = b"".join(zstandard.ZstdDecompressor().decompress(frames[index.offsets[n]:index.offsets[n + 1]])
                     for n in range(index.count))
    assert plain == image
    assert index.id(index.count - 1) == frame_id(image[(index.count - 1) * 16384:])


def test_a_bundle_shows_its_delta_files_and_installs_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gateway = make_gateway(tmp_path / "gw")
    image, signed = _release(gateway.root, capsys)
    bundle = gateway.root / "u.fwb"
    assert main(["bundle", "create", "--manifest", str(signed), str(gateway.root / "rootfs.img"),
                 "--out", str(bundle)]) == 0
    assert "#rootfs.img.frames, #rootfs.img.index" in capsys.readouterr().out
    assert main(["bundle", "show", str(bundle)]) == 0
    assert "delta: frames #rootfs.img.frames (" in capsys.readouterr().out
    assert main(["bundle", "show", "--json", str(bundle)]) == 0
    payload = json.loads(capsys.readouterr().out)["payloads"][0]
    assert payload["delta"]["index"]["uri"] == "#rootfs.img.index" and payload["carried"]
    # a bundle carries the solid image: it is installed as always, without delta
    assert main(["install", str(bundle), "--json", "--config", str(gateway.config_path)]) == 0
    outcome = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert outcome["result"] == "success" and outcome["delta"] is None
    assert (gateway.root / "rootfs-b.img").read_bytes()[:len(image)] == image


def test_a_bundle_of_the_manifest_only_names_no_payload_on_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gateway = make_gateway(tmp_path / "gw")
    (gateway.root / "rootfs.img").write_bytes(bytes(SLOT_SIZE // 2))
    (gateway.root / "spec.toml").write_text(SPEC.replace('"#rootfs.img"', '"http://10.0.2.100/files/rootfs.img"'))
    assert main(["manifest", "create", str(gateway.root / "spec.toml"), "--out", str(gateway.root / "u.suit")]) == 0
    assert main(["manifest", "sign", str(gateway.root / "u.suit"), "--key", str(gateway.root / "release.pem"),
                 "--out", str(gateway.root / "s.suit")]) == 0
    capsys.readouterr()
    assert main(["bundle", "create", "--manifest", str(gateway.root / "s.suit"),
                 "--out", str(gateway.root / "u.fwb")]) == 0
    out = capsys.readouterr().out
    assert "not carried, fetched by the device: http://10.0.2.100/files/rootfs.img" in out
    assert "http://10.0.2.100/files/rootfs.img.frames" in out


@pytest.mark.parametrize("extra, message", [({"delta_frame_size": 16384}, "only meaningful"),
                                            ({"delta": True, "delta_frame_size": 5000}, "multiple of 4096"),
                                            ({"delta": "yes"}, "must be of type bool")])
def test_delta_options_are_checked(tmp_path: Path, extra: dict, message: str) -> None:
    component = {"id": ["rootfs"], "file": "i.img", "uri": "#i.img", **extra}
    with pytest.raises(ConfigError, match=message):
        parse_spec({"sequence": 1, "vendor_domain": "e.com", "class_name": "c", "component": [component]}, tmp_path)


def test_the_final_feedback_says_what_the_delta_fetched() -> None:
    from agent.ddi.outbox import outcome_feedback
    stats = {"mode": "delta", "full": 4000, "fetched": 1000, "requests": 3, "frames": 10, "kept": 1, "copied": 6,
             "downloaded": 3, "reason": ""}
    full = {**stats, "mode": "full", "fetched": 0, "reason": "https://h/i.frames: the server does not honour Range"}
    _, body = outcome_feedback({"id": "1", "result": "success", "state": "committed",
                                "delta": {"rootfs.B": stats, "boot.B": full}})
    assert body["status"]["details"][1:] == [
        "rootfs.B: delta: fetched 1000 of 4000 bytes (25.0%) in 3 requests; frames: 6 copied from the booted "
        "slot, 1 already in place, 3 downloaded",
        "boot.B: full image (4000 bytes): https://h/i.frames: the server does not honour Range"]
