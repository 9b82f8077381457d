"""Real MCUboot and Zephyr SMP firmware for tests (hil/mcu/firmware.py fetches and checks it), run
as its ``manifest.json`` says: QEMU (``qemu-system-arm``) with the UART on a TCP socket chardev
(a pyserial ``socket://`` URL), or a native_sim executable (32-bit, on a pseudo-terminal).
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.mcu.firmware import Server, Unavailable, fixtures

START_TIMEOUT = 10.0
APPLICATION_TIMEOUT = 90.0        # seconds for MCUboot to hand over under TCG on a busy machine
APPLICATION_MARKERS = (b"Jumping to the first image slot", b"smp_sample")
PTY_LINE = re.compile(rb"connected to pseudotty: (\S+)")


def _die_with_parent() -> None:
    """In the child: killed when the test process dies, so no emulator outlives a test run."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    """A running firmware: its serial URL, its process, and (QEMU) its monitor socket."""

    url: str
    process: subprocess.Popen[bytes]
    monitor: Path | None = None
    monitor_used: bool = False

    def kill(self) -> None:
        """Power cut: the emulator ends at once."""
        self.process.kill()
        self.process.wait(timeout=10)

    def system_reset(self) -> None:
        """The machine's reset, as a watchdog or a reset pin does it; memory stays as it is."""
        assert self.monitor is not None
        self.monitor_used = True
        with socket.socket(socket.AF_UNIX) as link:
            link.settimeout(5.0)
            link.connect(str(self.monitor))
            link.sendall(b"system_reset\n")
            time.sleep(0.2)


@contextmanager
def qemu(entry: Server, workdir: Path, *, move_loader: tuple[int, int] | None = None) -> Iterator[Running]:
    """The QEMU command line of ``entry``, with a free port and a monitor socket; ``move_loader``
    (from, to) moves the ``-device loader`` of the signed image to another address."""
    if entry.qemu_cmd is None:
        raise Unavailable(f"{entry.config}@{entry.target} is not a QEMU target")
    argv = shlex.split(entry.qemu_cmd.replace("<PORT>", str(port := _free_port())))
    if shutil.which(argv[0]) is None:
        raise Unavailable(f"{argv[0]} is not installed (apt-get install qemu-system-arm)")
    if move_loader is not None:
        old, new = (f"addr=0x{address:08x}" for address in move_loader)
        argv = [arg.replace(old, new) if arg.startswith("loader,") else arg for arg in argv]
        assert any(new in arg for arg in argv), f"no -device loader at {old} in {entry.qemu_cmd}"
    monitor = workdir / f"monitor-{port}.sock"
    argv[argv.index("-monitor") + 1] = f"unix:{monitor},server=on,wait=off"
    process = subprocess.Popen(argv, cwd=fixtures(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    try:
        _wait_for_port(port, process)
        _await_application(port)
        yield Running(f"socket://127.0.0.1:{port}", process, monitor)
    finally:
        _stop(process)


def _await_application(port: int) -> None:
    """Read the console until MCUboot has handed over to the application, before anyone talks to
    the board. QEMU's UART keeps what is sent to it while MCUboot runs and hands it to the
    application as it starts, and a Zephyr SMP server given bytes that early stays deaf; a real
    line would have lost them. MCUboot's last line, or the application's banner, and then half a
    second of quiet; without either, five quiet seconds after some output, three without any (it
    booted before anyone listened: QEMU drops what nobody reads), or APPLICATION_TIMEOUT."""
    seen, quiet_since = b"", time.monotonic()
    deadline = time.monotonic() + APPLICATION_TIMEOUT
    with socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT) as console:
        console.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                chunk = console.recv(4096)
            except TimeoutError:
                chunk = None
            if chunk:
                seen, quiet_since = (seen + chunk)[-4096:], time.monotonic()
                continue
            if chunk == b"":
                return
            quiet = time.monotonic() - quiet_since
            if any(marker in seen for marker in APPLICATION_MARKERS) and quiet >= 0.5:
                return
            if quiet >= (5.0 if seen else 3.0):     # booted before anyone listened, or says nothing
                return


@contextmanager
def native_sim(entry: Server, workdir: Path) -> Iterator[Running]:
    """A native_sim server in ``workdir`` (it writes its flash file there); its pty."""
    if entry.run is None:
        raise Unavailable(f"{entry.config}@{entry.target} is not a native_sim target")
    if not (Path("/lib/ld-linux.so.2").exists() or Path("/lib32/ld-linux.so.2").exists()):
        raise Unavailable("native_sim is a 32-bit executable (apt-get install libc6-i386)")
    executable = workdir / entry.artifact
    shutil.copyfile(fixtures() / entry.artifact, executable)
    executable.chmod(0o755)
    process = subprocess.Popen([str(executable)], cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        yield Running(_pty_of(process), process)
    finally:
        _stop(process)


def _pty_of(process: subprocess.Popen[bytes]) -> str:
    """The pty native_sim names on its first lines, within START_TIMEOUT; its output is then
    left to a thread that reads it (the executable stalls on a full pipe)."""
    import select
    import threading

    assert process.stdout is not None
    deadline, seen = time.monotonic() + START_TIMEOUT, b""
    while time.monotonic() < deadline and len(seen) < 64 * 1024:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            if match := PTY_LINE.search(seen):
                threading.Thread(target=_discard, args=(process.stdout,), daemon=True).start()
                return match.group(1).decode()
    raise AssertionError(f"native_sim named no pty within {START_TIMEOUT:g} s: {seen[-300:]!r}")


def _discard(stream: Any) -> None:
    while stream.read1(4096):
        pass


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"QEMU ended with status {process.returncode} before its serial port opened")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"QEMU's serial port {port} did not open within {START_TIMEOUT:g} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
