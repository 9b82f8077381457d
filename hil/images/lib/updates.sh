# The bench's update bundles: slot images of the gateway in several flavours,
# each signed with the cache's release key and put in an fwagent bundle, in
# $OUT/updates/. Sourced by hil/images/build.
#
# name, version, sequence number, flavour, and the Things it updates too
# (a board's, see BOARD_MCU; none when left out). The factory image (slot A)
# is 1.0.0 with no installed manifest, so any sequence number from 1 on is new.
BENCH_UPDATES=(
    "good      2.0.0 2 normal"      # boots, healthy: fwagent commits it
    "panic     2.0.1 2 no-init"     # no /sbin/init: the initramfs cannot switch, the kernel panics
    "unhealthy 2.0.2 2 unhealthy"   # boots, fwagent runs, its health command exits 1: rolled back
    "silent    2.0.3 2 silent"      # boots, fwagent.service masked: never confirms
    "good-3    3.0.0 3 normal"      # a second good update
)
# A board adds "delta 2.1.0 2 normal" for the update by delta: its bundle carries the signed
# manifest only, which names the image by its http URI on the bench's update server
# (DELTA_PATH, beside [server].url of the board's agent.toml), with the image's frames and index
# beside it (docs/delta.md); the three files go to $OUT/delta/, which the scenario serves there.
DELTA_PATH=/files

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

# bench_mcu: the board's MCU (BOARD_MCU: its firmware's key in the fixtures'
# manifest, the version of its update), when it has one: $OUT/mcu/firmware.hex,
# what the MCU is flashed with at the factory, and $OUT/mcu/update.bin, its
# application signed again with the update's version (hil/mcu/firmware.py).
bench_mcu() {
    rm -rf "$OUT/mcu"
    [ -n "${BOARD_MCU[*]:-}" ] || return 0
    step mcu "the MCU's firmware (${BOARD_MCU[0]}) and its update ${BOARD_MCU[1]}"
    quiet uv run --quiet --frozen --project "$REPO" python -m hil.mcu.firmware export \
        "${BOARD_MCU[0]}" "${BOARD_MCU[1]}" "$OUT/mcu"
}

# bench_updates TREE: every BENCH_UPDATES bundle, from the factory TREE
# (which is left as it was), each image IMAGE_MIB MiB like the factory's.
bench_updates() {
    local tree=$1 line name version sequence kind things work payloads
    rm -rf "$OUT/updates" "$OUT/delta"
    mkdir -p "$OUT/updates"
    for line in "${BENCH_UPDATES[@]}"; do
        read -r name version sequence kind things <<<"$line"
        step "update-$name" "$kind rootfs $version${things:+ and $things ${BOARD_MCU[1]}}, sequence $sequence -> updates/$name.fwb"
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
        payloads=("$work/rootfs.img")
        if [ "$name" = delta ]; then
            delta_spec "$work/SPEC.toml"
            payloads=()
        fi
        case "${things:-}" in
            "") ;;
            mcu)
                cp "$OUT/mcu/update.bin" "$work/mcu.bin"
                payloads+=("$work/mcu.bin")
                cat >>"$work/SPEC.toml" <<SPEC

[[component]]
id = ["thing", "mcu"]
file = "mcu.bin"
uri = "#mcu.bin"
version = "${BOARD_MCU[1]}"
SPEC
                ;;
            *) die "update $name: the board has no Thing $things" ;;
        esac
        quiet fwagent manifest create "$work/SPEC.toml" --out "$work/manifest.suit"
        quiet fwagent manifest sign "$work/manifest.suit" --key "$RELEASE_KEY" --out "$work/signed.suit"
        quiet fwagent bundle create --manifest "$work/signed.suit" --version "$version" \
            --description "fwagent bench gateway $version ($name)" ${payloads[@]+"${payloads[@]}"} \
            --out "$OUT/updates/$name.fwb"
        if [ "$name" = delta ]; then
            mkdir -p "$OUT/delta"
            mv "$work/rootfs.img" "$work/rootfs.img.frames" "$work/rootfs.img.index" "$OUT/delta/"
        fi
        rm -rf "$work"
    done
}

# delta_spec SPEC: the rootfs component of SPEC named by its http URI on the bench's update
# server, with delta frames and index written beside the image by `fwagent manifest create`.
delta_spec() {
    local spec=$1 server
    server=$(sed -n 's/^url *= *"\([^"]*\)".*/\1/p' "$IMAGES/$BOARD/agent.toml" | head -n 1)
    [ -n "$server" ] || die "update delta: no [server].url in $IMAGES/$BOARD/agent.toml"
    sed -i "s|^uri = \"#rootfs.img\"|uri = \"${server%/}$DELTA_PATH/rootfs.img\"\ndelta = true|" "$spec"
    grep -q '^delta = true' "$spec" || die "update delta: the spec has no rootfs component to deliver by delta"
}
