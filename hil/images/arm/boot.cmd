# fwagent A/B slot selection on the bench's aarch64 gateway: the reference
# script of docs/bootloaders.md (RAUC's variables: BOOT_ORDER, BOOT_A_LEFT,
# BOOT_B_LEFT) on an msdos-labelled virtio disk: slot A is partition 2, slot
# B partition 3; the busybox initramfs takes root= as a device node.
#
# The variables live in uboot.env on partition 1 (FAT), not in U-Boot's own
# environment: the Debian kernel cannot reach the flash that holds that one,
# so the slot's fw_printenv/fw_setenv use the file (/etc/fw_env.config:
# /boot/loader/uboot.env 0x0 0x4000). It is a libubootenv image of one copy,
# 16 KiB: CRC32, then the variables. This script reads it with fatload and
# env import -c (taking those three variables only, whatever else the file
# holds) and writes it back with env export -c and fatwrite, where the
# reference script has saveenv.
#
# mkimage -T script makes this file boot.scr, which is on partition 1 beside
# uboot.env; bootcmd (arm/uboot-env.txt) loads and runs it.

# The stored A/B state. kernel_addr_r is free until the kernel is loaded.
# The import drops a listed variable the file lacks; the defaults below
# then put it back.
fwagent_env=missing
if fatload virtio 0:1 ${kernel_addr_r} uboot.env 0x4000; then
    fwagent_env=corrupt
    if env import -c ${kernel_addr_r} 0x4000 BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT; then
        fwagent_env=ok
    fi
fi
# (No apostrophe inside double quotes: this hush takes it for the start of a quote.)
if test "${fwagent_env}" != ok; then
    echo "fwagent: uboot.env is ${fwagent_env}: the default A/B variables of the board"
fi

# Defaults for a blank environment: A is the factory slot, B is empty.
if test -z "${BOOT_ORDER}"; then setenv BOOT_ORDER "A B"; fi
if test -z "${BOOT_A_LEFT}"; then setenv BOOT_A_LEFT 3; fi
if test -z "${BOOT_B_LEFT}"; then setenv BOOT_B_LEFT 0; fi

# slot := the first slot of BOOT_ORDER with attempts left. The agent writes
# "A B" or "B A"; any order but "B A" is taken as A first.
slot=none
if test "${BOOT_ORDER}" = "B A"; then
    if test ${BOOT_B_LEFT} -gt 0; then slot=B; elif test ${BOOT_A_LEFT} -gt 0; then slot=A; fi
else
    if test ${BOOT_A_LEFT} -gt 0; then slot=A; elif test ${BOOT_B_LEFT} -gt 0; then slot=B; fi
fi

if test "${slot}" = none; then
    echo "fwagent-uboot: no slot"
    if test -n "${fwagent_rescue}"; then run fwagent_rescue; fi
else
    # The variables as found, before this boot uses its attempt.
    echo "fwagent-uboot: BOOT_ORDER=[${BOOT_ORDER}] BOOT_A_LEFT=${BOOT_A_LEFT} BOOT_B_LEFT=${BOOT_B_LEFT} -> slot ${slot}"

    # Use one attempt; the booted system gives the attempts back when healthy.
    if test "${slot}" = A; then
        setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
        part=2
    else
        setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
        part=3
    fi
    # Saved before the slot runs (the reference script's saveenv). Saving
    # the three also completes a blank or damaged file for the agent.
    fwagent_saved=no
    if env export -c -s 0x4000 ${kernel_addr_r} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT; then
        if fatwrite virtio 0:1 ${kernel_addr_r} uboot.env 0x4000; then fwagent_saved=yes; fi
    fi
    if test "${fwagent_saved}" != yes; then echo "fwagent: cannot write uboot.env"; fi

    # bootargs is not among the variables saved.
    setenv bootargs "root=/dev/vda${part} ro rootwait console=ttyAMA0,115200 panic=5 quiet fwagent.slot=${slot}"
    if load virtio 0:${part} ${kernel_addr_r} /boot/vmlinuz; then
        if load virtio 0:${part} ${ramdisk_addr_r} /boot/initrd.img; then
            booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr}
        fi
    fi
    # The slot has no kernel to start (slot B before its first update, or a
    # broken image): reset, and the next boot finds one attempt fewer.
    echo "fwagent: slot ${slot} does not start; resetting"
    reset
fi
