"""pytest fixtures for tests against a real goosebit server (hil/server/goosebit.py).

A test module imports the fixture functions; its tests ask for the fixtures
by their names, ``goosebit`` and ``goosebit_device``:

    from goosebit_fixture import new_goosebit_device, serve_goosebit  # noqa: F401

* ``goosebit`` (session scope): one running ``GoosebitServer`` for the whole
  session (start-up takes 3-6 s). When goosebit's venv is missing, the test
  skips with the reason, or fails under CI (conftest's ``missing`` rule).
* ``goosebit_device`` (per test): a ``GoosebitDevice`` with a fresh controller
  id and a hardware board of its own, so that bundles of different tests never
  overlap in (version, compatibility), which goosebit refuses (409).
* ``make_bundle(directory, version, hardware)``: a signed fwagent bundle made
  by the agent's own writer, as ``install_bench.Gateway.bundle`` makes them,
  with the hardware compatibility goosebit assigns by.

Server state is shared by the session: a test sees only its own device and
software as long as it uses its own ``goosebit_device``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import missing

from agent.bundle.writer import create_bundle
from agent.manifest import cose
from agent.manifest.sign import add_signature
from agent.manifest.spec import build_manifest, parse_spec, unsigned_envelope
from hil.server.goosebit import GoosebitServer, available

KEY = cose.generate_private_key("es256")


@dataclass(frozen=True)
class GoosebitDevice:
    id: str                 # the DDI controller id
    board: str              # hw_boardname, unique to the test
    revision: str = "rev1"

    @property
    def hardware(self) -> list[tuple[str, str]]:
        """For ``make_bundle``: a bundle that fits this device."""
        return [(self.board, self.revision)]

    def attributes(self, sw_version: str) -> dict[str, str]:
        """configData for goosebit: all three keys it reads. A missing ``sw_version`` clears the
        device's version, and missing hardware makes it ``default/default``."""
        return {"hw_boardname": self.board, "hw_revision": self.revision, "sw_version": sw_version}


@pytest.fixture(scope="session", name="goosebit")
def serve_goosebit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoosebitServer]:
    """The session's goosebit; its settings, database, artifacts and server.log stay in pytest's
    temporary directory for a look after a failure."""
    reason = available()
    if reason:
        missing(reason)
    with GoosebitServer(tmp_path_factory.mktemp("goosebit")) as server:
        yield server


@pytest.fixture(name="goosebit_device")
def new_goosebit_device() -> GoosebitDevice:
    tag = uuid.uuid4().hex[:10]
    return GoosebitDevice(id=f"fwagent-{tag}", board=f"gw-{tag}")


def make_bundle(directory: Path, version: str, hardware: list[tuple[str, str]] = (), *,
                size: int = 256 << 10, fmt: str = "newc", seed: int = 1, sequence: int = 2,
                key: Any = None) -> Path:
    """A bundle of one ``size``-byte rootfs image for class gw-test of example.com (as
    ``make_gateway`` configures), signed with ``key`` (default: this module's)."""
    image = directory / f"rootfs-{version}.img"
    image.write_bytes(random.Random(seed).randbytes(size))
    spec = parse_spec({"sequence": sequence, "vendor_domain": "example.com", "class_name": "gw-test",
                       "component": [{"id": ["rootfs"], "file": image.name, "uri": f"#{image.name}",
                                      "version": version}]}, directory)
    signed = add_signature(unsigned_envelope(build_manifest(spec)), key or KEY)
    out = directory / f"update-{version}.fwb"
    create_bundle(out, signed, [(image.name, image)], version, hardware, fmt=fmt)
    return out
