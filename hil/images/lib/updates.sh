# The bench's update bundles: slot images of the gateway in several flavours,
# each signed with the cache's release key and put in an fwagent bundle, in
# $OUT/updates/. Sourced by hil/images/build.
#
# name, version, sequence number, flavour. The factory image (slot A) is
# 1.0.0 with no installed manifest, so any sequence number from 1 on is new.
BENCH_UPDATES=(
    "good      2.0.0 2 normal"      # boots, healthy: fwagent commits it
    "panic     2.0.1 2 no-init"     # no /sbin/init: the initramfs cannot switch, the kernel panics
    "unhealthy 2.0.2 2 unhealthy"   # boots, fwagent runs, its health command exits 1: rolled back
    "silent    2.0.3 2 silent"      # boots, fwagent.service masked: never confirms
    "good-3    3.0.0 3 normal"      # a second good update
)

# flavour TREE FLAVOUR on|off: turns a flavour's change to the tree on, or back off.
flavour() {
    local tree=$1 name=$2 state=$3 saved=$SCRATCH/flavour-saved
    case "$name/$state" in
        normal/*) ;;
        no-init/on)
            mkdir -p "$saved"
            mv "$tree/usr/sbin/init" "$saved/init" ;;
        no-init/off)
            mv "$saved/init" "$tree/usr/sbin/init" ;;
        unhealthy/on)
            mkdir -p "$saved"
            mv "$tree/usr/lib/fwagent-bench/health" "$saved/health"
            printf '#!/bin/sh\n# The bench'"'"'s unhealthy update: the health check fails.\necho "fwagent-bench: unhealthy on purpose" >&2\nexit 1\n' \
                >"$tree/usr/lib/fwagent-bench/health"
            chmod 755 "$tree/usr/lib/fwagent-bench/health" ;;
        unhealthy/off)
            mv "$saved/health" "$tree/usr/lib/fwagent-bench/health" ;;
        silent/on)
            mkdir -p "$saved"
            mv "$tree/etc/systemd/system/fwagent.service" "$saved/fwagent.service"
            ln -s /dev/null "$tree/etc/systemd/system/fwagent.service" ;;
        silent/off)
            rm "$tree/etc/systemd/system/fwagent.service"
            mv "$saved/fwagent.service" "$tree/etc/systemd/system/fwagent.service" ;;
        *) die "unknown flavour $name" ;;
    esac
}

# bench_updates TREE: every BENCH_UPDATES bundle, from the factory TREE
# (which is left as it was), each image IMAGE_MIB MiB like the factory's.
bench_updates() {
    local tree=$1 line name version sequence kind work
    rm -rf "$OUT/updates"
    mkdir -p "$OUT/updates"
    for line in "${BENCH_UPDATES[@]}"; do
        read -r name version sequence kind <<<"$line"
        step "update-$name" "$kind rootfs $version, sequence $sequence -> updates/$name.fwb"
        work=$SCRATCH/updates/$name
        rm -rf "$work"
        mkdir -p "$work"
        flavour "$tree" "$kind" on
        echo "$version" >"$tree/etc/fwagent-bench-version"
        rootfs_image "$tree" "$work/rootfs.img" "$IMAGE_MIB"
        echo 1.0.0 >"$tree/etc/fwagent-bench-version"
        flavour "$tree" "$kind" off
        cat >"$work/SPEC.toml" <<SPEC
sequence = $sequence
vendor_domain = "$VENDOR_DOMAIN"
class_name = "$CLASS_NAME"
description = "fwagent bench gateway $version ($name)"

[[component]]
id = ["rootfs"]
file = "rootfs.img"
uri = "#rootfs.img"
version = "$version"
SPEC
        quiet fwagent manifest create "$work/SPEC.toml" --out "$work/manifest.suit"
        quiet fwagent manifest sign "$work/manifest.suit" --key "$RELEASE_KEY" --out "$work/signed.suit"
        quiet fwagent bundle create --manifest "$work/signed.suit" --version "$version" \
            --description "fwagent bench gateway $version ($name)" "$work/rootfs.img" --out "$OUT/updates/$name.fwb"
        rm -rf "$work"
    done
}
