# Shared by every image build step: progress lines, steps with one-line
# errors, hashing for cache keys, host packages. Sourced, not run.
#
# Progress goes to stderr, so that stdout carries only the result (the board
# directory). Each step's tool output goes to $BUILD_LOG; a failing step
# prints the end of that log and then one line:
#   hil/images/build: error: x86/<step>: <command> exited <n> (log: <file>)

BUILD_STEP="start"
BUILD_LOG=/dev/null
BUILD_T0=${EPOCHREALTIME/./}

log() {
    local us=$(( ${EPOCHREALTIME/./} - BUILD_T0 ))
    printf '%4d.%ds %s\n' $((us / 1000000)) $((us / 100000 % 10)) "$*" >&2
}

die() {
    printf 'hil/images/build: error: %s: %s\n' "$BUILD_STEP" "$*" >&2
    exit 1
}

# step NAME DESCRIPTION: the step that a failure will be blamed on.
step() {
    BUILD_STEP="${BOARD:+$BOARD/}$1"
    shift
    log "$BUILD_STEP: $*"
}

_on_error() {
    local rc=$? cmd=$BASH_COMMAND
    case "$cmd" in
        '"$@"'*|quiet\ *) cmd=$QUIET_TOOL ;;        # the tool that quiet ran
    esac
    if [ "$BUILD_LOG" != /dev/null ] && [ -s "$BUILD_LOG" ]; then
        tail -n 15 "$BUILD_LOG" | sed 's/^/    | /' >&2
    fi
    printf 'hil/images/build: error: %s: %s exited %s (log: %s)\n' "$BUILD_STEP" "$cmd" "$rc" "$BUILD_LOG" >&2
    exit "$rc"
}

# quiet CMD...: runs a tool with its output in the build log.
QUIET_TOOL=
quiet() {
    QUIET_TOOL=$1
    "$@" >>"$BUILD_LOG" 2>&1
}

# hash_text TEXT...: a short cache key (sha256, 16 hex digits).
hash_text() {
    printf '%s\n' "$@" | sha256sum | cut -c1-16
}

# hash_files FILE...: a short key over the names and contents of files.
hash_files() {
    local f
    for f in "$@"; do
        printf '%s %s\n' "$(sha256sum <"$f" | cut -d' ' -f1)" "${f##*/}"
    done | sha256sum | cut -c1-16
}

# need_host_packages PKG...: installs the Debian packages that are missing
# (with --no-install-recommends: otherwise QEMU alone pulls in a desktop).
need_host_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "$BUILD_STEP: installing ${missing[*]}"
    quiet apt-get update -qq
    DEBIAN_FRONTEND=noninteractive quiet apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# publish TMP FINAL: moves a finished cache entry into place in one rename,
# so that an interrupted build never leaves a half-made entry behind.
publish() {
    rm -rf "$2"
    mv "$1" "$2"
}

# prune KEEP CANDIDATE...: removes the cache entries among CANDIDATEs other
# than KEEP (earlier keys of the same kind), so that the cache does not grow.
prune() {
    local keep=$1 entry
    shift
    for entry in "$@"; do
        [ "$entry" = "$keep" ] || [ ! -e "$entry" ] || rm -rf "$entry"
    done
}
