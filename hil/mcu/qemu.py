"""A QEMU microcontroller attached to the bench's gateway: its UART on the gateway's second
serial port, its reset line pulled by the gateway, its power switched by the bench.

The MCU runs real firmware (MCUboot and a Zephyr SMP server, hil/mcu/firmware.py) in
``qemu-system-arm``. Its UART is a socket chardev; the gateway's QEMU connects its second serial
port (``/dev/ttyS1`` in the guest) to ``line`` (a Unix socket path the board's YAML gives both),
where a wire (hil/mcu/wire.py) joins the two at ``baud``, as fast as a real line and no faster.

The reset line: ``reset_wire`` is a script this driver writes, which resets the MCU (QMP
``system_reset``) and answers ``reset``. The gateway's QEMU runs it for each connection to an
address of the guest's (``guestfwd``), and the gateway's ``[things.mcu].reset`` command
connects there: the agent pulls the reset line as it would a GPIO wired to the MCU's reset pin.

Power: a real MCU keeps its flash through a power cut, but QEMU keeps an emulated MCU's flash
only while its process lives. So ``off()`` halts the CPU (QMP ``stop``: nothing runs, nothing
is sent) and ``on()`` resets the machine and lets it run, its flash as it was: a power cycle.
``factory()`` ends the process: the next ``on()`` starts from the factory firmware.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import attr
from labgrid.driver.common import Driver
from labgrid.factory import target_factory
from labgrid.protocol import PowerProtocol, ResetProtocol
from labgrid.step import step

from hil.mcu.wire import Wire

START_TIMEOUT = 10.0          # seconds for QEMU to open its sockets
QMP_TIMEOUT = 5.0             # seconds for one QMP exchange

WIRE = """#!/bin/sh
# The reset line of the bench's MCU (hil/mcu/qemu.py): one pulse per connection, answered "reset".
printf '%s\\n' '{{"execute": "qmp_capabilities"}}' '{{"execute": "system_reset"}}' |
    socat -t 1 - "UNIX-CONNECT:{qmp}" >/dev/null 2>&1 && echo reset || echo failed
"""


@target_factory.reg_driver
@attr.s(eq=False)
class McuQEMUDriver(Driver, PowerProtocol, ResetProtocol):
    """``qemu_bin``: the tools key of qemu-system-arm; ``machine``, ``cpu``: the board;
    ``firmware``: the images key of its factory flash (a hex file); ``line``: the Unix socket
    the gateway's second serial port connects to, and ``baud`` its speed; ``reset_wire``: where
    the reset script goes."""

    qemu_bin = attr.ib(validator=attr.validators.instance_of(str))
    machine = attr.ib(validator=attr.validators.instance_of(str))
    cpu = attr.ib(validator=attr.validators.instance_of(str))
    firmware = attr.ib(validator=attr.validators.instance_of(str))
    line = attr.ib(validator=attr.validators.instance_of(str))
    reset_wire = attr.ib(validator=attr.validators.instance_of(str))
    baud = attr.ib(default=115200, validator=attr.validators.instance_of(int))

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._process: subprocess.Popen[bytes] | None = None
        self._scratch: str | None = None
        self.wire: Wire | None = None
        self.powered = False

    def on_activate(self) -> None:
        self._scratch = tempfile.mkdtemp(prefix="fwagent-mcu-")
        reset = Path(self.reset_wire)
        reset.write_text(WIRE.format(qmp=self._socket("wire")))
        reset.chmod(0o755)
        self.wire = Wire(Path(self.line), Path(self._socket("uart")), self.baud)
        self.wire.start()

    def on_deactivate(self) -> None:
        self.factory()
        if self.wire is not None:
            self.wire.stop()
            self.wire = None
        Path(self.reset_wire).unlink(missing_ok=True)
        if self._scratch is not None:
            for name in os.listdir(self._scratch):
                os.unlink(os.path.join(self._scratch, name))
            os.rmdir(self._scratch)
            self._scratch = None

    # --- PowerProtocol ---------------------------------------------------------------------

    @Driver.check_active
    @step()
    def on(self) -> None:
        """Power on: QEMU started with the factory firmware, or the halted MCU reset and run."""
        if self.powered:
            return
        if self._process is None or self._process.poll() is not None:
            self._start()
        else:
            self._qmp("system_reset")
            self._qmp("cont")
        self.powered = True
        if self.wire is not None:
            self.wire.power(True)

    @Driver.check_active
    @step()
    def off(self) -> None:
        """Power off: the CPU halts where it is; the flash keeps what was written."""
        if self._process is not None and self._process.poll() is None:
            self._qmp("stop")
        self.powered = False
        if self.wire is not None:
            self.wire.power(False)

    @Driver.check_active
    def cycle(self) -> None:
        self.off()
        self.on()

    # --- ResetProtocol ---------------------------------------------------------------------

    @Driver.check_active
    @step()
    def reset(self) -> None:
        self._qmp("system_reset")

    # --- the bench's own -------------------------------------------------------------------

    @step()
    def factory(self) -> None:
        """Off, and the next power-on starts from the factory firmware."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=30)
            self._process = None
        self.powered = False
        if self.wire is not None:
            self.wire.power(False)

    def _start(self) -> None:
        config = self.target.env.config
        uart = Path(self._socket("uart"))
        uart.unlink(missing_ok=True)
        argv = [config.get_tool(self.qemu_bin), "-machine", self.machine, "-cpu", self.cpu,
                "-display", "none", "-monitor", "none",
                "-chardev", f"socket,id=uart,path={uart},server=on,wait=off", "-serial", "chardev:uart",
                "-qmp", f"unix:{self._socket('qmp')},server=on,wait=off",
                "-qmp", f"unix:{self._socket('wire')},server=on,wait=off",
                "-device", f"loader,file={config.get_image_path(self.firmware)}"]
        self.logger.debug("starting %s", argv)
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not (uart.exists() and Path(self._socket("qmp")).exists()):
            if self._process.poll() is not None:
                raise OSError(f"the MCU's QEMU ended with status {self._process.returncode} at its start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the MCU's QEMU opened no sockets within {START_TIMEOUT:g} s")
            time.sleep(0.05)

    def _socket(self, name: str) -> str:
        assert self._scratch is not None
        return os.path.join(self._scratch, f"{name}.sock")

    def _qmp(self, command: str) -> Any:
        """One QMP command on a connection of its own; its answer (events are skipped)."""
        with socket.socket(socket.AF_UNIX) as link:
            link.settimeout(QMP_TIMEOUT)
            link.connect(self._socket("qmp"))
            answers = link.makefile("rb")
            json.loads(answers.readline())                     # the greeting
            for execute in ("qmp_capabilities", command):
                link.sendall(json.dumps({"execute": execute}).encode() + b"\n")
                while True:
                    answer = json.loads(answers.readline())
                    if "event" in answer:
                        continue
                    if "error" in answer:
                        raise OSError(f"QMP {execute}: {answer['error'].get('desc', answer['error'])}")
                    break
            return answer["return"]
