"""A QEMU gateway whose power goes out as a real one's does.

labgrid's QEMUDriver starts QEMU at power-on and switches it off with QMP's
``quit``, which lets QEMU finish and flush what it holds. This driver's
``off()`` kills the QEMU process instead (SIGKILL: nothing is shut down,
flushed or finished), as a power cut would; the next ``on()`` starts a new
one. ``restore_disk()`` gives the board its factory disk again, for a
scenario that starts from a clean device.
"""

from __future__ import annotations

import subprocess

import attr
from labgrid.driver import QEMUDriver
from labgrid.factory import target_factory
from labgrid.step import step
from labgrid.util import PtxExpect


@target_factory.reg_driver
@attr.s(eq=False)
class GatewayQEMUDriver(QEMUDriver):
    """``pristine``: the images key of the factory disk that ``restore_disk`` copies to ``disk``."""

    pristine = attr.ib(default=None, validator=attr.validators.optional(attr.validators.instance_of(str)))

    @step()
    def off(self) -> None:
        """The power cut: QEMU killed; the console starts afresh with the next power-on."""
        if not self.status:
            return
        self._child.kill()
        self._child.wait(timeout=30)
        self._child = None
        if self._clientsocket is not None:
            self._clientsocket.close()
            self._clientsocket = None
        self._expect = PtxExpect(self)
        self.status = 0

    @step()
    def restore_disk(self) -> None:
        """The factory disk again (a sparse copy); the board is off afterwards."""
        if self.pristine is None or self.disk is None:
            raise ValueError("GatewayQEMUDriver needs both disk and pristine to restore the disk")
        self.off()
        config = self.target.env.config
        subprocess.run(["cp", "--sparse=always", config.get_image_path(self.pristine),
                        config.get_image_path(self.disk)], check=True)
