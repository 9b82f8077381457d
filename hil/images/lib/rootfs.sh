# The Debian root file system of a slot: a cached base tarball (mmdebstrap),
# then the bench gateway's layer on a copy of it. Sourced by hil/images/build.
#
# Uses SUITE, DEB_ARCH, MIRRORS (apt source lines), CACHE, SCRATCH.

# What the slot runs: systemd as PID 1 (with udev for its device units),
# python3 for fwagent's venv, the board's boot environment tool
# (BOOTLOADER_PACKAGES: grub-common for grub-editenv, libubootenv-tool for
# fw_printenv/fw_setenv), busybox for the few tools minbase lacks (ip, ps,
# ping, vi). Set by rootfs_base.
ROOTFS_PACKAGES=()

# Left out of every package as dpkg unpacks it: documentation, translations,
# udev's hardware database (names of USB and PCI gadgets), glibc's iconv
# modules, and grub-common's tools other than grub-editenv.
ROOTFS_DPKG_OPTIONS=(
    'path-exclude=/usr/share/man/*'
    'path-exclude=/usr/share/info/*'
    'path-exclude=/usr/share/locale/*'
    'path-include=/usr/share/locale/locale.alias'
    'path-exclude=/usr/share/doc/*'
    'path-include=/usr/share/doc/*/copyright'
    'path-exclude=/lib/udev/hwdb.d/*'
    'path-exclude=/usr/lib/udev/hwdb.d/*'
    'path-exclude=/usr/lib/*/gconv/*'
    'path-exclude=/usr/share/grub/*'
    'path-exclude=/usr/bin/grub-*'
    'path-exclude=/usr/sbin/grub-*'
    'path-include=/usr/bin/grub-editenv'
)

# rootfs_base: sets ROOTFS_TAR, the mmdebstrap tarball of ROOTFS_PACKAGES,
# made once per suite, architecture, package list and options. For an
# architecture the host cannot run, mmdebstrap runs in a VM of that
# architecture (lib/rootfs-guest.sh), with the same options.
rootfs_base() {
    local key opts=() o native
    ROOTFS_PACKAGES=(systemd systemd-sysv udev python3 "${BOOTLOADER_PACKAGES[@]}" busybox)
    native=$(dpkg --print-architecture)
    key=$(hash_text "$SUITE" "$DEB_ARCH" "${ROOTFS_PACKAGES[*]}" "${ROOTFS_DPKG_OPTIONS[*]}" "${MIRRORS[@]}" \
        $([ "$DEB_ARCH" = "$native" ] || hash_files "${ROOTFS_GUEST_FILES[@]}"))
    ROOTFS_TAR=$CACHE/rootfs/$SUITE-$DEB_ARCH-$key.tar.zst
    if [ -f "$ROOTFS_TAR" ]; then
        step rootfs-base "cached: ${ROOTFS_TAR##*/}"
        return
    fi
    step rootfs-base "mmdebstrap $SUITE $DEB_ARCH minbase + ${ROOTFS_PACKAGES[*]}"
    for o in "${ROOTFS_DPKG_OPTIONS[@]}"; do
        opts+=("--dpkgopt=$o")
    done
    # The merged-usr hook makes the /usr merge itself; without it bookworm
    # installs the usrmerge package, and with it perl (+50 MB).
    opts=(--variant=minbase --architectures="$DEB_ARCH" --include="$(IFS=,; echo "${ROOTFS_PACKAGES[*]}")"
          --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr "${opts[@]}" --aptopt='Acquire::Languages "none"')
    mkdir -p "$CACHE/rootfs"
    rm -f "$ROOTFS_TAR.tmp.tar.zst"
    if [ "$DEB_ARCH" = "$native" ]; then
        TMPDIR=$SCRATCH quiet mmdebstrap "${opts[@]}" "$SUITE" "$ROOTFS_TAR.tmp.tar.zst" "${MIRRORS[@]}"
    else
        rootfs_base_in_guest "$ROOTFS_TAR.tmp.tar.zst" "${opts[@]}"
    fi
    mv "$ROOTFS_TAR.tmp.tar.zst" "$ROOTFS_TAR"
    prune "$ROOTFS_TAR" "$CACHE/rootfs/$SUITE-$DEB_ARCH-"*.tar.zst
}

# rootfs_tree DIR: the base tarball unpacked into DIR with the gateway's
# layer: the bench's configuration files (hil/images/rootfs/, then the
# board's hil/images/<board>/rootfs/), fwagent as docs/gateway-install.md
# installs it, units enabled and masked, the kernel and initramfs in /boot,
# the factory version 1.0.0.
# Uses KERNEL_DIR (vmlinuz, lib/modules/), INITRD, WHEELHOUSE, RELEASE_PUB, CONSOLE.
rootfs_tree() {
    local tree=$1 python
    step rootfs-tree "unpack the base and add the gateway layer"
    rm -rf "$tree"
    mkdir -p "$tree"
    tar -C "$tree" --zstd -xf "$ROOTFS_TAR"
    cp -r --preserve=mode "$IMAGES/rootfs/." "$tree/"
    # The board's own files (arm: /etc/fw_env.config).
    [ ! -d "$IMAGES/$BOARD/rootfs" ] || cp -r --preserve=mode "$IMAGES/$BOARD/rootfs/." "$tree/"
    mkdir -p "$tree/boot/loader" "$tree/data"
    : >"$tree/etc/machine-id"          # a new id each boot (the root file system is read-only)
    rm -f "$tree/etc/motd" "$tree/etc/update-motd.d/"*

    # Tools minbase lacks, from busybox, where Debian has no real one.
    local applet
    for applet in ip ping ps free top vi; do
        [ -e "$tree/usr/bin/$applet" ] || [ -e "$tree/usr/sbin/$applet" ] || ln -s /bin/busybox "$tree/usr/bin/$applet"
    done

    step fwagent-layer "fwagent from the wheelhouse into /opt/fwagent (docs/gateway-install.md)"
    python=$(sed -n 's/^Version: \([0-9.]*\).*/\1/p' <<<"$(tree_dpkg_status "$tree" python3.11)")
    [ -n "$python" ] || die "no python3.11 in the base root file system"
    quiet /usr/bin/python3 "$IMAGES/lib/install_venv.py" "$tree" /opt/fwagent "$WHEELHOUSE" "$python"
    ln -sf /opt/fwagent/bin/fwagent "$tree/usr/bin/fwagent"
    install -m 644 "$REPO/systemd/fwagent.service" "$tree/etc/systemd/system/fwagent.service"
    install -d -m 755 "$tree/etc/fwagent/keys"
    install -m 644 "$RELEASE_PUB" "$tree/etc/fwagent/keys/release.pub.pem"
    # The configuration is the device's own and outlives updates: on /data.
    ln -sf /data/fwagent/agent.toml "$tree/etc/fwagent/agent.toml"

    step rootfs-units "enable the gateway's services, mask what a bench board does not need"
    quiet systemctl --root="$tree" enable fwagent.service fwagent-bench-up.service systemd-networkd.service \
        "serial-getty@$CONSOLE.service"
    quiet systemctl --root="$tree" set-default multi-user.target
    # One emulated CPU does all the boot's work, so what a bench board does
    # not need goes: timers that would wake it for housekeeping; first-boot
    # and update-time services (the machine id is new at every boot, the
    # root file system read-only; nothing to remount, no network settings
    # on the kernel command line, no modules to load by list); login
    # sessions (no D-Bus); gettys on VGA consoles; kernel interfaces nobody
    # uses here; module loads and static device nodes for modules the board
    # does not have.
    quiet systemctl --root="$tree" mask \
        apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
        systemd-tmpfiles-clean.timer e2scrub_reap.service \
        systemd-firstboot.service systemd-random-seed.service systemd-update-utmp.service \
        systemd-update-utmp-runlevel.service ldconfig.service systemd-hwdb-update.service \
        systemd-journal-catalog-update.service systemd-update-done.service systemd-sysusers.service \
        systemd-remount-fs.service systemd-network-generator.service systemd-modules-load.service \
        systemd-logind.service getty@tty1.service getty-static.service \
        proc-sys-fs-binfmt_misc.automount systemd-binfmt.service dev-hugepages.mount dev-mqueue.mount \
        sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount sys-fs-fuse-connections.mount \
        systemd-pstore.service kmod-static-nodes.service modprobe@loop.service modprobe@dm_mod.service \
        modprobe@efi_pstore.service modprobe@configfs.service modprobe@fuse.service modprobe@drm.service

    step rootfs-boot "kernel $KERNEL_VERSION and initramfs into /boot"
    install -m 644 "$KERNEL_DIR/vmlinuz" "$tree/boot/vmlinuz"
    install -m 644 "$INITRD" "$tree/boot/initrd.img"
    mkdir -p "$tree/usr/lib/modules"
    cp -r "$KERNEL_DIR/lib/modules/$KERNEL_VERSION" "$tree/usr/lib/modules/"

    step rootfs-clean "drop caches and logs, compile Python bytecode"
    rm -rf "$tree"/var/cache/apt/* "$tree"/var/lib/apt/lists/* "$tree"/var/log/* "$tree"/var/cache/debconf/*-old
    touch "$tree/var/log/wtmp" "$tree/var/log/btmp" "$tree/var/log/lastlog"
    # Whatever the packages' scripts did not compile (all of it when they
    # were not run), with the host's Python of the same version.
    quiet /usr/bin/python3 -m compileall -q -j0 -s "$tree" -p / "$tree/usr/lib/python3" "$tree/usr/lib/python$GUEST_PYTHON"
    echo 1.0.0 >"$tree/etc/fwagent-bench-version"
}

# tree_dpkg_status TREE PACKAGE: the package's paragraph of the tree's dpkg status.
tree_dpkg_status() {
    awk -v RS= -v pkg="Package: $2" 'index($0, pkg "\n") == 1' "$1/var/lib/dpkg/status"
}

# rootfs_image TREE OUT [MIB]: an ext4 image of TREE, MIB MiB large;
# without MIB sized to the content (plus the file system's own blocks and
# 10 %), and IMAGE_MIB set to that. Owners, modes and times come from the
# tree (mkfs.ext4 -d, no mount). No reserved blocks: the slot is mounted
# read-only.
rootfs_image() {
    local tree=$1 out=$2 kib inodes
    inodes=$(find "$tree" -xdev | wc -l)
    if [ -n "${3:-}" ]; then
        IMAGE_MIB=$3
    else
        kib=$(du -sk "$tree" | cut -f1)
        IMAGE_MIB=$(( (kib * 11 / 10 + inodes / 4) / 1024 + 8 ))
    fi
    rm -f "$out"
    quiet mkfs.ext4 -q -F -b 4096 -m 0 -N $((inodes + inodes / 4 + 256)) -J size=4 -L rootfs \
        -d "$tree" "$out" "${IMAGE_MIB}M"
}

# factory_and_updates: the slot's tree, slot A's factory image
# ($SCRATCH/rootfs-a.img, sets IMAGE_MIB) and the bench's update bundles:
# what every board builds before its disk.
factory_and_updates() {
    local tree=$SCRATCH/rootfs
    rootfs_tree "$tree"

    step rootfs-image "slot A's factory image (1.0.0)"
    rootfs_image "$tree" "$SCRATCH/rootfs-a.img"
    log "rootfs-image: ${IMAGE_MIB} MiB, $(du -sm "$tree" | cut -f1) MiB of files"

    bench_mcu
    bench_updates "$tree"
}
