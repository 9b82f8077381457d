"""The SMP simulator, checked from outside by smpclient (PyPI), which fwagent does not use.

smpclient frames, sizes and sequences its requests with the smp package; if it
uploads an imgtool-made image to the simulator's pty and then reads that
image's hash back from the image state list, the simulator speaks SMP over the
console as the independent implementation understands it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from smpclient import SMPClient                     # the dev group: uv sync
from smpclient.generics import error_v1, success
from smpclient.requests.image_management import ImageStatesRead, ImageStatesWrite
from smpclient.requests.os_management import MCUMgrParametersRead, ResetWrite
from smpclient.transport.serial import SMPSerialTransport

from conftest import missing
from hil.sim.smp_device import BANNER, SmpSimulator, imgtool_path, keygen, public_key, sign_image


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if imgtool_path() is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    return sign_image(os.urandom(24 * 1024), tmp_path_factory.mktemp("images"), version="1.2.3+4")


@pytest.fixture
def sim() -> Iterator[SmpSimulator]:
    with SmpSimulator(baud=0, slot_size=64 * 1024) as simulator:
        yield simulator


def run(port: str, work: Any, *, timeout: float = 2.5) -> Any:
    """``await work(client)`` with an smpclient connected to ``port``."""
    async def session() -> Any:
        async with SMPClient(SMPSerialTransport(), port, timeout_s=timeout) as client:
            return await work(client)
    return asyncio.run(session())


async def upload(client: SMPClient, image: bytes) -> list[int]:
    return [offset async for offset in client.upload(image, first_timeout_s=10)]


def imgtool_hash(image: bytes, directory: Path) -> bytes:
    from imgtool import image as imgtool_image

    path = directory / "image.bin"
    path.write_bytes(image)
    result, _, digest, _ = imgtool_image.Image.verify(str(path), None)
    assert result == imgtool_image.VerifyResult.OK
    return digest


def test_smpclient_uploads_an_image_and_reads_its_hash_back(sim: SmpSimulator, image: bytes,
                                                            tmp_path: Path) -> None:
    async def work(client: SMPClient) -> tuple[list[int], Any, int]:
        offsets = await upload(client, image)
        return offsets, await client.request(ImageStatesRead()), client._transport.max_unencoded_size

    offsets, states, max_message = run(sim.port, work)
    assert max_message == 1024 - 4              # smpclient read the advertised buffer size
    assert offsets[-1] == len(image)
    steps = [later - earlier for earlier, later in zip([0, *offsets], offsets, strict=False)]
    assert all(step > 900 for step in steps[:-1])
    assert bytes(sim.device.slots[0].data[:len(image)]) == image
    assert success(states)
    [slot] = states.images
    assert (slot.slot, slot.version, slot.hash, slot.bootable) == (0, "1.2.3.4", imgtool_hash(image, tmp_path), True)
    assert sim.device.decoder.damaged == 0


def test_smpclient_sees_only_images_signed_with_the_devices_key(tmp_path: Path) -> None:
    """imgtool verifies both images with the trusted key, and the simulator lists the one it
    accepts, with imgtool's hash."""
    if imgtool_path() is None:
        missing("imgtool is not installed (uv sync installs the dev group)")
    from imgtool import image as imgtool_image
    from imgtool import keys as imgtool_keys

    trusted, other = keygen(tmp_path, "ecdsa-p256"), keygen(tmp_path / "other", "ecdsa-p256")
    payload = os.urandom(8 * 1024)
    for key, listed in ((other, False), (trusted, True)):
        signed = sign_image(payload, tmp_path, version="5.0.0", key=key)
        (tmp_path / "check.bin").write_bytes(signed)
        verdict, _, digest, _ = imgtool_image.Image.verify(str(tmp_path / "check.bin"),
                                                           imgtool_keys.load(str(trusted)))
        assert (verdict == imgtool_image.VerifyResult.OK) is listed
        with SmpSimulator(baud=0, slot_size=64 * 1024, key=public_key(trusted)) as sim:
            async def work(client: SMPClient) -> Any:
                await upload(client, signed)
                return await client.request(ImageStatesRead())

            states = run(sim.port, work)
        assert success(states)
        assert [state.hash for state in states.images] == ([digest] if listed else [])


def test_smpclient_small_messages_when_params_are_off(image: bytes) -> None:
    """MCUboot's default build has no MCUmgr params: it answers rc 8 and smpclient falls
    back to its legacy 169-byte messages, which the simulator takes as they come."""
    with SmpSimulator(baud=0, slot_size=64 * 1024, params=False) as sim:
        async def work(client: SMPClient) -> tuple[Any, list[int]]:
            return await client.request(MCUMgrParametersRead()), await upload(client, image)

        answer, offsets = run(sim.port, work)
    assert error_v1(answer) and answer.rc == 8
    assert offsets[-1] == len(image) and len(offsets) > 150
    assert bytes(sim.device.slots[0].data[:len(image)]) == image


def test_smpclient_test_reset_confirm(sim: SmpSimulator, image: bytes) -> None:
    async def work(client: SMPClient) -> list[Any]:
        await upload(client, image)
        digest = (await client.request(ImageStatesRead())).images[0].hash
        seen = [await client.request(ImageStatesWrite(hash=digest, confirm=False))]
        seen.append(await client.request(ResetWrite()))
        await asyncio.sleep(0.6)
        seen.append(await client._transport.read_serial())
        seen.append(await client.request(ImageStatesRead()))
        seen.append(await client.request(ImageStatesWrite(confirm=True)))
        return seen

    marked, reset, console, booted, confirmed = run(sim.port, work)
    assert marked.images[0].pending is True
    assert error_v1(reset) and reset.rc == 0          # MCUboot's {"rc": 0}: smpclient reads it as an error object
    assert console.endswith(BANNER)
    assert (booted.images[0].active, booted.images[0].confirmed, booted.images[0].pending) == (True, None, None)
    assert confirmed.images[0].confirmed is True
    assert sim.device.boots == 1


def test_smpclient_reads_through_log_lines(sim: SmpSimulator, image: bytes) -> None:
    sim.device.faults.noise = True
    offsets = run(sim.port, lambda client: upload(client, image))
    assert offsets[-1] == len(image)


def test_a_dropped_answer_stops_smpclient(sim: SmpSimulator, image: bytes) -> None:
    """The fault is visible from outside: smpclient has no retry (fwagent does)."""
    sim.device.faults.drop = {5}
    with pytest.raises(TimeoutError):
        run(sim.port, lambda client: upload(client, image), timeout=0.5)
    assert sim.device.uploads == 5


def test_the_line_rate_is_modelled(image: bytes) -> None:
    with SmpSimulator(baud=115200, slot_size=64 * 1024) as sim:
        started = time.monotonic()
        run(sim.port, lambda client: upload(client, image))
        elapsed = time.monotonic() - started
        wire = (sim.rx_bytes + sim.tx_bytes) * 10 / 115200
    assert wire > 2.5
    assert wire <= elapsed                    # how close the clients come is bench/bench_smp.py's
