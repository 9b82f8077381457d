# A Debian kernel package, unpacked (never installed on the host) and cut
# down to the kernel image and the modules a board needs. Sourced by
# hil/images/build.
#
# debian_kernel META MODULE...: resolves the meta package (for instance
# linux-image-cloud-amd64) to the concrete ABI package it depends on today
# (linux-image-6.1.0-57-cloud-amd64), downloads that one deb and keeps, in
# $CACHE/kernel/<package>_<version>-<hash of the MODULE names>/, vmlinuz,
# config and lib/modules/<kver>/ with the MODULEs and what they depend on
# (depmod run). The ABI number
# changes with security updates; the key holds it. Sets KERNEL_DIR,
# KERNEL_VERSION (the release, 6.1.0-57-cloud-amd64), KERNEL_PACKAGE
# ("<package> <version>") and KERNEL_MODULES (the module files, in
# loading order, relative to lib/modules/<kver>/).
#
# APT_OPTIONS (an array, default empty) lets a board read another
# architecture's packages from a private apt state. When the candidate
# cannot be downloaded (package lists older than the mirror), apt-get update
# runs and the package is resolved again.
APT_OPTIONS=()

debian_kernel() {
    local meta=$1 attempt
    shift
    KERNEL_META_FLAVOUR=${meta#linux-image-}
    for attempt in 1 2; do
        step kernel "resolve $meta"
        # (Nothing, with no package lists yet.)
        KERNEL_PKG=$({ apt-cache "${APT_OPTIONS[@]}" depends "$meta" 2>/dev/null || true; } |
            sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)
        KERNEL_PKG_VERSION=
        [ -z "$KERNEL_PKG" ] ||
            KERNEL_PKG_VERSION=$({ apt-cache "${APT_OPTIONS[@]}" policy "$KERNEL_PKG" 2>/dev/null || true; } |
                sed -n 's/^ *Candidate: //p')
        KERNEL_DIR=$CACHE/kernel/${KERNEL_PKG}_$KERNEL_PKG_VERSION-$(hash_text "$@")
        [ -z "$KERNEL_PKG_VERSION" ] || [ ! -f "$KERNEL_DIR/modules.load" ] || break
        if [ -n "$KERNEL_PKG_VERSION" ] && _download_kernel; then
            _unpack_kernel "$@"
            break
        fi
        [ "$attempt" = 1 ] || die "cannot download $meta ($KERNEL_PKG $KERNEL_PKG_VERSION)"
        log "kernel: package lists out of date? apt-get update"
        quiet apt-get "${APT_OPTIONS[@]}" update
    done
    log "kernel: $KERNEL_PKG $KERNEL_PKG_VERSION"
    KERNEL_PACKAGE="$KERNEL_PKG $KERNEL_PKG_VERSION"
    KERNEL_VERSION=$(ls "$KERNEL_DIR/lib/modules")
    mapfile -t KERNEL_MODULES <"$KERNEL_DIR/modules.load"
}

# _download_kernel: KERNEL_PKG's deb into $SCRATCH/kernel/deb; its status is apt-get's.
_download_kernel() {
    local status=0
    step kernel "download $KERNEL_PKG $KERNEL_PKG_VERSION"
    rm -rf "$SCRATCH/kernel"
    mkdir -p "$SCRATCH/kernel/deb"
    pushd "$SCRATCH/kernel/deb" >/dev/null
    apt-get "${APT_OPTIONS[@]}" download "$KERNEL_PKG=$KERNEL_PKG_VERSION" >>"$BUILD_LOG" 2>&1 || status=$?
    popd >/dev/null
    return $status
}

# _unpack_kernel MODULE...: the downloaded deb cut down into KERNEL_DIR.
_unpack_kernel() {
    local dir=$KERNEL_DIR tmp=$SCRATCH/kernel kver m
    step kernel "unpack $KERNEL_PKG $KERNEL_PKG_VERSION"
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    dpkg-deb -x "$tmp"/deb/*.deb "$tmp/root"
    kver=$(ls "$tmp/root/lib/modules")
    cp "$tmp/root/boot/vmlinuz-$kver" "$dir.tmp/vmlinuz"
    cp "$tmp/root/boot/config-$kver" "$dir.tmp/config"
    quiet depmod -b "$tmp/root" "$kver"
    # Each module after the ones it needs, as modprobe would load them.
    for m in "$@"; do
        modprobe -d "$tmp/root" -S "$kver" --show-depends "$m" | sed -n 's/^insmod \([^ ]*\).*/\1/p'
    done | awk '!seen[$0]++' | sed "s|^$tmp/root/lib/modules/$kver/||" >"$dir.tmp/modules.load"
    mkdir -p "$dir.tmp/lib/modules/$kver"
    pushd "$tmp/root/lib/modules/$kver" >/dev/null
    cp --parents $(cat "$dir.tmp/modules.load") modules.order modules.builtin modules.builtin.modinfo \
        "$dir.tmp/lib/modules/$kver/"
    popd >/dev/null
    quiet depmod -b "$dir.tmp" "$kver"
    rm -rf "$tmp"
    mkdir -p "$CACHE/kernel"
    publish "$dir.tmp" "$dir"
    # Older ABIs of the same flavour (linux-image-*-cloud-amd64_*) are not used again.
    prune "$dir" "$CACHE/kernel/linux-image-"*"-${KERNEL_META_FLAVOUR}_"*
}
