# The aarch64 gateway: QEMU's virt machine with Debian's U-Boot (qemu_arm64)
# as its firmware, U-Boot's own environment in the second flash bank, the
# A/B script on a FAT partition, the Debian arm64 kernel, virtio disk and
# NIC. Sourced by hil/images/build, which calls board_prepare before the
# shared steps and board_build after.

BOARD_DESCRIPTION="QEMU aarch64 virt (TCG), U-Boot 2023.01 (qemu_arm64), msdos label, Debian 12 arm64 kernel, systemd"
SUITE=bookworm
DEB_ARCH=arm64
GUEST_ARCH=aarch64
GUEST_PYTHON=3.11          # Debian 12's python3
GUEST_GLIBC=2.36           # Debian 12's libc6: the newest manylinux level its wheels may need
CONSOLE=ttyAMA0
KERNEL_META=linux-image-arm64
# virtio disk, network and RNG; ext4 (a module in this kernel, with the
# crc32c module its metadata checksums need); FAT for the boot partition (codepage 437,
# iocharset ascii: the kernel's defaults); autofs4, which systemd asks for.
KERNEL_MODULE_NAMES=(virtio_pci virtio_blk virtio_net virtio-rng ext4 vfat nls_cp437 nls_ascii autofs4)
# fw_printenv/fw_setenv, for fwagent's uboot backend.
BOOTLOADER_PACKAGES=(libubootenv-tool)
VENDOR_DOMAIN=example.com
CLASS_NAME=fwagent-bench-gateway

# qemu-system-aarch64, U-Boot for it, mkimage and mkenvimage, fw_printenv to
# check the environment images, debugfs (e2fsprogs) for the build VM's disk.
BOARD_HOST_PACKAGES=(qemu-system-arm u-boot-qemu u-boot-tools libubootenv-tool socat)
UBOOT_BIN=/usr/lib/u-boot/qemu_arm64/u-boot.bin
# Host files that end up in the board (part of its stamp).
BOARD_FIRMWARE=("$UBOOT_BIN")
# The VM that runs mmdebstrap for this architecture (lib/rootfs-guest.sh).
BUILD_VM_QEMU=(qemu-system-aarch64 -machine virt -cpu cortex-a57)
BUILD_VM_CONSOLE=ttyAMA0

source "$IMAGES/arm/disk.sh"

# board_prepare: sets BUSYBOX, the initramfs's static busybox (arm64's, from
# the private apt state).
board_prepare() {
    guest_busybox
    BUSYBOX=$GUEST_BUSYBOX
}

# board_build: the slot, the update bundles, the disk and the flash.
board_build() {
    factory_and_updates
    arm_disk "$SCRATCH/rootfs-a.img" "$OUT/disk.img"
    arm_firmware "$OUT"
}
