# The x86 board's disk (lib/disk.sh's layout): SeaBIOS -> GRUB (i386-pc
# core.img in the gap after the MBR) -> grub.cfg on the FAT partition -> the
# kernel and initramfs of the chosen slot. Sourced by hil/images/build.
#
#   p1  FAT  16 MiB     grub/grub.cfg, grub/grubenv      /boot/loader
#   p2  ext4 SLOT_MIB   slot A (the factory image)      /dev/vda2
#   p3  ext4 SLOT_MIB   slot B (empty: zeros)           /dev/vda3
#   p4  ext4 DATA_MIB   fwagent/agent.toml, state       /data
#
# x86_disk FACTORY OUT: sets BOOT_MIB, SLOT_MIB and DATA_MIB from IMAGE_MIB.

# Every GRUB module grub.cfg uses, built into core.img: no module directory on disk.
GRUB_MODULES=(biosdisk part_msdos fat ext2 normal configfile loadenv test echo linux serial terminal
              terminfo halt reboot sleep)

x86_disk() {
    local factory=$1 out=$2 work=$SCRATCH/x86-boot
    disk_sizes
    step disk "p1 boot ${BOOT_MIB} MiB, p2/p3 slots ${SLOT_MIB} MiB, p4 data ${DATA_MIB} MiB"
    rm -rf "$work"
    mkdir -p "$work/p1/grub"

    # p1: GRUB's configuration and its environment block, A the factory slot.
    quiet grub-script-check "$IMAGES/x86/grub.cfg"
    cp "$IMAGES/x86/grub.cfg" "$work/p1/grub/grub.cfg"
    quiet grub-editenv "$work/p1/grub/grubenv" create
    quiet grub-editenv "$work/p1/grub/grubenv" set ORDER="A B" A_OK=1 B_OK=0 A_TRY=0 B_TRY=0
    assemble_disk "$factory" "$work/p1" "$IMAGES/x86/agent.toml" "$work/disk.img"

    # GRUB: boot.img's code in the MBR (the partition table stays), core.img
    # from sector 1 on. boot.img looks for core.img at sector 1 and its
    # blocklist starts at sector 2, so no grub-install/grub-bios-setup is needed.
    quiet grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/grub' "${GRUB_MODULES[@]}"
    [ "$(stat -c %s "$work/core.img")" -lt $(( (2048 - 1) * 512 )) ] || die "core.img does not fit before partition 1"
    quiet dd if=/usr/lib/grub/i386-pc/boot.img of="$work/disk.img" bs=440 count=1 conv=notrunc
    quiet dd if="$work/core.img" of="$work/disk.img" bs=512 seek=1 conv=notrunc
    mv "$work/disk.img" "$out"
    rm -rf "$work"
}
