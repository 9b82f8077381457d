# A board's disk, assembled from files without loop devices or mounts. Every
# board has the same layout (msdos label, virtio disk):
#
#   p1  FAT  16 MiB     the boot script and its environment   /boot/loader
#   p2  ext4 SLOT_MIB   slot A (the factory image)            /dev/vda2
#   p3  ext4 SLOT_MIB   slot B (empty: zeros)                 /dev/vda3
#   p4  ext4 DATA_MIB   fwagent/agent.toml, state             /data
#
# The board adds what its firmware needs (x86: GRUB in the gap after the
# MBR). Sourced by hil/images/build.

# disk_sizes: sets BOOT_MIB, SLOT_MIB and DATA_MIB from IMAGE_MIB.
disk_sizes() {
    BOOT_MIB=16
    SLOT_MIB=$(( (IMAGE_MIB * 13 + 9) / 10 ))                 # the image's size and 30 % room
    DATA_MIB=$(( SLOT_MIB + SLOT_MIB / 2 + 32 ))              # room for a downloaded bundle
}

# assemble_disk FACTORY BOOT_DIR AGENT_TOML OUT: the disk at OUT; p1 holds
# BOOT_DIR's files, p4 AGENT_TOML as fwagent/agent.toml. Call disk_sizes first.
assemble_disk() {
    local factory=$1 boot_dir=$2 agent_toml=$3 out=$4 work=$SCRATCH/disk start
    rm -rf "$work"
    mkdir -p "$work/data/fwagent"

    # p1: the boot script and its environment.
    quiet mkfs.vfat -n FWBOOT -C "$work/boot.part" $((BOOT_MIB * 1024))
    quiet mcopy -s -i "$work/boot.part" "$boot_dir"/* ::

    # p4: the device's configuration, which outlives updates.
    install -m 600 "$agent_toml" "$work/data/fwagent/agent.toml"
    chmod 700 "$work/data/fwagent"
    quiet mkfs.ext4 -q -F -b 4096 -L data -d "$work/data" "$work/data.part" "${DATA_MIB}M"

    # The partition table, then each partition at its MiB offset (sparse).
    rm -f "$out"
    truncate -s $(( 1 + BOOT_MIB + 2 * SLOT_MIB + DATA_MIB ))M "$out"
    quiet sfdisk "$out" <<TABLE
label: dos
start=1MiB, size=${BOOT_MIB}MiB, type=e, bootable
size=${SLOT_MIB}MiB, type=83
size=${SLOT_MIB}MiB, type=83
size=${DATA_MIB}MiB, type=83
TABLE
    start=1
    quiet dd if="$work/boot.part" of="$out" bs=1M seek=$start conv=notrunc,sparse
    start=$((start + BOOT_MIB))
    quiet dd if="$factory" of="$out" bs=1M seek=$start conv=notrunc,sparse
    start=$((start + 2 * SLOT_MIB))                           # slot B stays zeros
    quiet dd if="$work/data.part" of="$out" bs=1M seek=$start conv=notrunc,sparse
    rm -rf "$work"
}
