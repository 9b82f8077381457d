# The x86 gateway: QEMU's i440fx PC with SeaBIOS, GRUB from the MBR, the
# Debian cloud kernel, virtio disk and NIC. Sourced by hil/images/build,
# which calls board_prepare before the shared steps and board_build after.

BOARD_DESCRIPTION="QEMU x86_64 PC (TCG), SeaBIOS, GRUB (i386-pc, msdos label), Debian 12 cloud kernel, systemd"
SUITE=bookworm
DEB_ARCH=amd64
GUEST_ARCH=x86_64
GUEST_PYTHON=3.11          # Debian 12's python3
GUEST_GLIBC=2.36           # Debian 12's libc6: the newest manylinux level its wheels may need
CONSOLE=ttyS0
KERNEL_META=linux-image-cloud-amd64
# virtio disk, network and RNG; FAT for the boot partition (codepage 437,
# iocharset ascii: the kernel's defaults); autofs4, which systemd asks for.
# ext4 is built into the kernel.
KERNEL_MODULE_NAMES=(virtio_pci virtio_blk virtio_net virtio-rng vfat nls_cp437 nls_ascii autofs4)
# grub-editenv, for fwagent's grub backend.
BOOTLOADER_PACKAGES=(grub-common)
VENDOR_DOMAIN=example.com
CLASS_NAME=fwagent-bench-gateway

BOARD_HOST_PACKAGES=(qemu-system-x86 qemu-system-arm seabios grub-pc-bin grub-common busybox-static socat)
# Host files that end up in the board (part of its stamp): GRUB's MBR code.
BOARD_FIRMWARE=(/usr/lib/grub/i386-pc/boot.img)

# The MCU on the gateway's second serial port (hil/mcu/qemu.py): QEMU's
# micro:bit running MCUboot (a swap mode) and a Zephyr SMP server, the real
# firmware of hil/mcu/firmware.py; and an update of the gateway that carries
# a new application for it.
BOARD_MCU=(serial@qemu_cortex_m0 1.2.3)
BENCH_UPDATES+=("things    2.1.0 2 normal mcu")
# The good update's tree as 2.1.0, delivered by delta from the update server (lib/updates.sh).
BENCH_UPDATES+=("delta     2.1.0 2 normal")

source "$IMAGES/x86/disk.sh"

# board_prepare: sets BUSYBOX, the initramfs's static busybox (the host's).
board_prepare() {
    BUSYBOX=/bin/busybox
}

# board_build: the slot, the update bundles and the disk.
board_build() {
    factory_and_updates
    x86_disk "$SCRATCH/rootfs-a.img" "$OUT/disk.img"
}
