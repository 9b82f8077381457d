"""Installs a wheelhouse into a venv inside a root filesystem tree, without running the device's Python.

usage: install_venv.py ROOT PREFIX WHEELHOUSE PYTHON_VERSION
e.g.   install_venv.py /tmp/rootfs /opt/fwagent wheelhouse/ 3.11.2

Makes under ROOT what ``python3 -m venv --without-pip PREFIX`` and then
``PREFIX/bin/pip install --no-index --find-links WHEELHOUSE fwagent`` make on
the device (docs/gateway-install.md): ``pyvenv.cfg`` pointing at the device's
/usr/bin/python3, the ``bin/python*`` links, every wheel of WHEELHOUSE unpacked
into ``lib/pythonX.Y/site-packages`` with its RECORD, console scripts whose
first line is ``#!PREFIX/bin/python3``, and the bytecode compiled.

Installing a wheel is unpacking a zip file, so this works for a device of
another architecture as well (an aarch64 board built on an x86 host, where
the device's Python cannot run). Run it with a host Python of the device's
version (X.Y), so that the bytecode suits the device; Debian 12's
/usr/bin/python3 for a Debian 12 device. It needs the ``installer`` library
(Debian: python3-installer).
"""

from __future__ import annotations

import sys
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile


def make_venv(root: Path, prefix: str, version: str) -> None:
    major_minor = ".".join(version.split(".")[:2])
    venv = root / prefix.lstrip("/")
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "include" / f"python{major_minor}").mkdir(parents=True, exist_ok=True)
    (venv / "lib" / f"python{major_minor}" / "site-packages").mkdir(parents=True, exist_ok=True)
    if not (venv / "lib64").is_symlink():
        (venv / "lib64").symlink_to("lib")
    for name, target in (("python3", "/usr/bin/python3"), ("python", "python3"),
                         (f"python{major_minor}", "python3")):
        link = venv / "bin" / name
        if not link.is_symlink():
            link.symlink_to(target)
    (venv / "pyvenv.cfg").write_text(
        "home = /usr/bin\n"
        "include-system-site-packages = false\n"
        f"version = {version}\n"
        f"executable = /usr/bin/python{major_minor}\n"
        f"command = /usr/bin/python3 -m venv --without-pip {prefix}\n")


def install_wheels(root: Path, prefix: str, version: str, wheelhouse: Path) -> list[str]:
    major_minor = ".".join(version.split(".")[:2])
    site = f"{prefix}/lib/python{major_minor}/site-packages"
    installed = []
    for wheel in sorted(wheelhouse.glob("*.whl")):
        name = wheel.name.split("-")[0]
        scheme = {"purelib": site, "platlib": site, "scripts": f"{prefix}/bin", "data": prefix,
                  "headers": f"{prefix}/include/site/python{major_minor}/{name}"}
        destination = SchemeDictionaryDestination(
            scheme, interpreter=f"{prefix}/bin/python3", script_kind="posix",
            bytecode_optimization_levels=(0,), destdir=str(root))
        with WheelFile.open(wheel) as source:
            install(source, destination, additional_metadata={"INSTALLER": b"fwagent-image-build\n"})
        installed.append(wheel.name)
    return installed


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    root, prefix, wheelhouse, version = Path(argv[0]), argv[1], Path(argv[2]), argv[3]
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not version.startswith(host + "."):
        print(f"install_venv.py: the device has Python {version}, this is {host}: its bytecode would not suit",
              file=sys.stderr)
        return 1
    make_venv(root, prefix, version)
    for name in install_wheels(root, prefix, version, wheelhouse):
        print(f"installed {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
