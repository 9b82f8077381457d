# Packages of a board whose architecture is not the build machine's (the
# arm64 board on an amd64 host), read from a private apt state so that the
# host's dpkg architectures and package lists stay as they are. Sourced by
# hil/images/build.
#
# foreign_apt: sets APT_OPTIONS (used by lib/kernel.sh) to an apt state of
# DEB_ARCH only, in $CACHE/apt/<arch>/, with MIRRORS as its sources. Its
# package lists are fetched when a package cannot be resolved or downloaded.
foreign_apt() {
    local dir=$CACHE/apt/$DEB_ARCH
    mkdir -p "$dir/state/lists/partial" "$dir/cache/archives/partial" "$dir/sources.list.d"
    printf '%s\n' "${MIRRORS[@]}" >"$dir/sources.list.tmp"
    if cmp -s "$dir/sources.list.tmp" "$dir/sources.list"; then
        rm "$dir/sources.list.tmp"
    else
        mv "$dir/sources.list.tmp" "$dir/sources.list"
        rm -rf "$dir/state/lists/"*_* "$dir/cache/"*.bin              # the lists of other mirrors
    fi
    [ -f "$dir/status" ] || : >"$dir/status"
    APT_OPTIONS=(
        -o "Dir::State=$dir/state" -o "Dir::State::status=$dir/status" -o "Dir::Cache=$dir/cache"
        -o "Dir::Etc::SourceList=$dir/sources.list" -o "Dir::Etc::SourceParts=$dir/sources.list.d"
        -o "APT::Architecture=$DEB_ARCH" -o "APT::Architectures::=$DEB_ARCH" -o 'Acquire::Languages=none'
    )
}

# guest_busybox: sets GUEST_BUSYBOX, the static busybox of DEB_ARCH
# (busybox-static) for the initramfs, kept in $CACHE/busybox/<arch>-<version>/.
guest_busybox() {
    local version dir attempt
    for attempt in 1 2; do
        version=$({ apt-cache "${APT_OPTIONS[@]}" policy busybox-static 2>/dev/null || true; } |
            sed -n 's/^ *Candidate: //p')
        dir=$CACHE/busybox/$DEB_ARCH-${version//[:~]/_}
        GUEST_BUSYBOX=$dir/busybox
        [ -z "$version" ] || [ "$version" = "(none)" ] || [ ! -x "$GUEST_BUSYBOX" ] || return 0
        if [ -n "$version" ] && [ "$version" != "(none)" ]; then
            step busybox "download busybox-static $version ($DEB_ARCH)"
            rm -rf "$SCRATCH/busybox"
            mkdir -p "$SCRATCH/busybox/deb"
            if (cd "$SCRATCH/busybox/deb" && apt-get "${APT_OPTIONS[@]}" download "busybox-static=$version") \
                >>"$BUILD_LOG" 2>&1; then
                break
            fi
        fi
        [ "$attempt" = 1 ] || die "cannot download busybox-static ($DEB_ARCH)"
        log "busybox: package lists out of date? apt-get update"
        quiet apt-get "${APT_OPTIONS[@]}" update
    done
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    dpkg-deb -x "$SCRATCH/busybox/deb/"*.deb "$SCRATCH/busybox/root"
    install -m 755 "$SCRATCH/busybox/root/bin/busybox" "$dir.tmp/busybox"
    rm -rf "$SCRATCH/busybox"
    publish "$dir.tmp" "$dir"
    prune "$dir" "$CACHE/busybox/$DEB_ARCH-"*
}
