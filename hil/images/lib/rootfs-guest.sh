# The Debian base tarball of a board whose CPU the build machine cannot run
# (the arm64 board on an amd64 host, with no binfmt emulation): mmdebstrap
# itself runs in a QEMU VM of the board's architecture, so that every
# maintainer script runs on the CPU it was built for, and the tarball is the
# one mmdebstrap makes on such a machine. Sourced by hil/images/build.
#
# 1. On the host, mmdebstrap --variant=extract (no code of the guest's
#    architecture runs) downloads the package lists and the packages and
#    unpacks them into a tree: the VM's system (dpkg, apt, perl and
#    mmdebstrap itself, unconfigured: it needs nothing else), with every
#    package the slot needs left in its apt cache.
# 2. That tree is an ext4 image (mkfs.ext4 -d); the board's kernel and
#    initramfs boot it under TCG with lib/rootfs-guest-init as PID 1, which
#    runs mmdebstrap with the host's options, offline.
# 3. The host reads the tarball from the image (debugfs) and compresses it.
#
# Uses the board's BUILD_VM_QEMU (the emulator, machine and CPU) and
# BUILD_VM_CONSOLE, KERNEL_DIR, INITRD, SUITE, DEB_ARCH, GUEST_PYTHON,
# ROOTFS_PACKAGES and MIRRORS.

# What the result depends on besides the options (part of the tarball's key).
ROOTFS_GUEST_FILES=("$IMAGES/lib/rootfs-guest.sh" "$IMAGES/lib/rootfs-guest-init")

# rootfs_base_in_guest OUT OPTION...: OUT, a .tar.zst, made by mmdebstrap
# OPTION... SUITE OUT MIRRORS... in the VM.
rootfs_base_in_guest() {
    local out=$1 work=$SCRATCH/rootfs-guest tree disk status
    shift
    tree=$work/tree
    disk=$work/vm.ext4
    rm -rf "$work"
    mkdir -p "$work"

    step rootfs-base "download and unpack $SUITE $DEB_ARCH packages for the build VM (mmdebstrap --variant=extract)"
    TMPDIR=$SCRATCH quiet mmdebstrap --variant=extract --architectures="$DEB_ARCH" \
        --include='?essential' --include='?priority(required)' \
        --include="apt,usr-is-merged,mmdebstrap,$(IFS=,; echo "${ROOTFS_PACKAGES[*]}")" \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --skip=cleanup/apt \
        --aptopt='Acquire::Languages "none"' "$SUITE" "$tree" "${MIRRORS[@]}"
    # Unpacked, not installed: the VM's system gets the users and groups
    # base-passwd would make, and Python bytecode (mmdebstrap's tar filter
    # is a Python program, started once per package) from the host's Python
    # of the same version.
    cp "$tree/usr/share/base-passwd/passwd.master" "$tree/etc/passwd"
    cp "$tree/usr/share/base-passwd/group.master" "$tree/etc/group"
    quiet /usr/bin/python3 -m compileall -q -j0 -s "$tree" -p / "$tree/usr/lib/python3" "$tree/usr/lib/python$GUEST_PYTHON"
    mkdir -p "$tree/fwagent-build"
    install -m 755 "$IMAGES/lib/rootfs-guest-init" "$tree/fwagent-build/init"
    printf '%s\n' "$@" "$SUITE" /fwagent-build/rootfs.tar "${MIRRORS[@]}" >"$tree/fwagent-build/args"
    # Room for the tarball beside the tree.
    quiet mkfs.ext4 -q -F -b 4096 -L fwagent-build -d "$tree" "$disk" "$(( $(du -sm "$tree" | cut -f1) + 1024 ))M"
    rm -rf "$tree"

    step rootfs-base "mmdebstrap $SUITE $DEB_ARCH in a ${BUILD_VM_QEMU[0]#qemu-system-} VM (TCG; a few minutes)"
    # No network: everything is on the disk. At most 30 minutes. mitigations=off and nokaslr
    # spare the emulated CPU the page-table switches and barriers of every
    # system call (half the time under TCG).
    timeout 1800 "${BUILD_VM_QEMU[@]}" -m 2G -smp 2 -accel tcg,tb-size=256 -display none -monitor none -serial stdio \
        -no-reboot -nic none -device virtio-rng-pci \
        -kernel "$KERNEL_DIR/vmlinuz" -initrd "$INITRD" \
        -append "console=$BUILD_VM_CONSOLE root=/dev/vda rw panic=1 mitigations=off nokaslr quiet init=/fwagent-build/init" \
        -drive "file=$disk,format=raw,if=virtio,cache=unsafe" </dev/null 2>&1 |
        _rootfs_guest_console
    status=$(sed -n 's/^fwagent-rootfs-build: exit \([0-9]*\).*/\1/p' "$work/console.log" | tail -n1)
    if [ "$status" != 0 ]; then
        tail -n 25 "$work/console.log" | sed 's/^/    | /' >&2
        die "mmdebstrap in the build VM ${status:+exited $status}${status:-did not finish} (log: $BUILD_LOG)"
    fi

    step rootfs-base "read the tarball from the VM's disk"
    quiet debugfs -R "dump /fwagent-build/rootfs.tar $work/rootfs.tar" "$disk"
    [ -s "$work/rootfs.tar" ] || die "no rootfs.tar on the build VM's disk"
    quiet zstd -q -T0 --rm "$work/rootfs.tar" -o "$out"
    rm -rf "$work"
}

# _rootfs_guest_console: the VM's console into the build log and
# $work/console.log; mmdebstrap's progress lines ("I: ...") to stderr.
_rootfs_guest_console() {
    local line
    while IFS= read -r line; do
        line=${line%$'\r'}
        printf '%s\n' "$line" >>"$work/console.log"
        printf '%s\n' "$line" >>"$BUILD_LOG"
        case "$line" in
            "I: "*) log "rootfs-base: vm: ${line#I: }" ;;
        esac
    done
}
