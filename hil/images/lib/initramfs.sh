# The initramfs: a static busybox, the kernel modules a board needs to reach
# its root file system, and lib/initramfs-init as /init. Sourced by
# hil/images/build.
#
# build_initramfs BUSYBOX OUT: a gzip-compressed newc cpio at OUT, from the
# kernel of KERNEL_DIR/KERNEL_VERSION and its KERNEL_MODULES (in loading order).
build_initramfs() {
    local busybox=$1 out=$2 root=$SCRATCH/initramfs m
    step initramfs "busybox + ${#KERNEL_MODULES[@]} modules"
    rm -rf "$root"
    mkdir -p "$root/bin" "$root/etc" "$root/lib/modules"
    install -m 755 "$busybox" "$root/bin/busybox"
    install -m 755 "$IMAGES/lib/initramfs-init" "$root/init"
    for m in "${KERNEL_MODULES[@]}"; do
        install -D -m 644 "$KERNEL_DIR/lib/modules/$KERNEL_VERSION/$m" "$root/lib/modules/$m"
    done
    printf '%s\n' "${KERNEL_MODULES[@]}" >"$root/etc/modules.load"
    (cd "$root" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --owner=0:0 --reproducible) | gzip -9n >"$out"
}
