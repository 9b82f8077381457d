# The aarch64 board's disk (lib/disk.sh's layout) and flash: QEMU's virt
# machine starts U-Boot (-bios), which reads its environment from the second
# flash bank; its bootcmd runs boot.scr from the FAT partition, which picks
# the slot and boots its kernel and initramfs. Sourced by hil/images/build.
#
#   p1  FAT  16 MiB     boot.scr, uboot.env              /boot/loader
#   p2  ext4 SLOT_MIB   slot A (the factory image)      /dev/vda2
#   p3  ext4 SLOT_MIB   slot B (empty: zeros)           /dev/vda3
#   p4  ext4 DATA_MIB   fwagent/agent.toml, state       /data

# The A/B variables of a new device: A the factory slot with its attempts, B empty.
UBOOT_AB_INITIAL=("BOOT_ORDER=A B" "BOOT_A_LEFT=3" "BOOT_B_LEFT=0")
UBOOT_ENV_SIZE=0x4000           # uboot.env, and /etc/fw_env.config's size
UBOOT_FLASH_ENV_SIZE=0x40000    # qemu_arm64: CONFIG_ENV_SIZE, at the start of flash bank 1

# arm_disk FACTORY OUT: sets BOOT_MIB, SLOT_MIB and DATA_MIB from IMAGE_MIB.
arm_disk() {
    local factory=$1 out=$2 work=$SCRATCH/arm-boot
    disk_sizes
    step disk "p1 boot ${BOOT_MIB} MiB, p2/p3 slots ${SLOT_MIB} MiB, p4 data ${DATA_MIB} MiB"
    rm -rf "$work"
    mkdir -p "$work/p1"

    # p1: the boot script and the A/B variables, checked with the tool the slot uses.
    quiet mkimage -A arm64 -O linux -T script -C none -n "fwagent A/B" -d "$IMAGES/arm/boot.cmd" "$work/p1/boot.scr"
    printf '%s\n' "${UBOOT_AB_INITIAL[@]}" >"$work/ab.txt"
    quiet mkenvimage -s "$UBOOT_ENV_SIZE" -o "$work/p1/uboot.env" "$work/ab.txt"
    uboot_env_check "$work/p1/uboot.env" "$UBOOT_ENV_SIZE" "${UBOOT_AB_INITIAL[@]}"
    assemble_disk "$factory" "$work/p1" "$IMAGES/arm/agent.toml" "$out"
    rm -rf "$work"
}

# arm_firmware OUT: OUT/u-boot.bin (QEMU's -bios) and OUT/flash1.img, the
# second 64 MiB flash bank with U-Boot's environment (arm/uboot-env.txt).
arm_firmware() {
    local out=$1 work=$SCRATCH/arm-flash
    step firmware "u-boot.bin ($(dpkg-query -W -f='u-boot-qemu ${Version}' u-boot-qemu)), flash1.img with U-Boot's environment"
    rm -rf "$work"
    mkdir -p "$work"
    quiet mkenvimage -s "$UBOOT_FLASH_ENV_SIZE" -o "$work/env.bin" "$IMAGES/arm/uboot-env.txt"
    uboot_env_check "$work/env.bin" "$UBOOT_FLASH_ENV_SIZE" "${UBOOT_AB_INITIAL[@]}" "bootdelay=0"
    # A flash bank of -machine virt is 64 MiB; the rest is zeros (sparse).
    truncate -s 64M "$work/flash1.img"
    quiet dd if="$work/env.bin" of="$work/flash1.img" conv=notrunc
    install -m 644 "$UBOOT_BIN" "$out/u-boot.bin"
    mv "$work/flash1.img" "$out/flash1.img"
    rm -rf "$work"
}

# uboot_env_check IMAGE SIZE NAME=VALUE...: fw_printenv (libubootenv, as in
# the slot) reads IMAGE, its CRC good, with each NAME=VALUE in it.
uboot_env_check() {
    local image=$1 size=$2 listing assignment
    shift 2
    printf '%s 0x0 %s\n' "$image" "$size" >"$image.cfg"
    listing=$(fw_printenv -c "$image.cfg" 2>&1) || die "fw_printenv cannot read $image: $listing"
    for assignment in "$@"; do
        grep -qxF -- "$assignment" <<<"$listing" || die "$image lacks $assignment: $listing"
    done
    ! grep -qi 'bad crc\|using default' <<<"$listing" || die "$image: $listing"
    rm "$image.cfg"
}
