# The bench's signing key pair: made once, kept in the cache, shared by the
# boards (each board's root file system trusts its public half). Sourced by
# hil/images/build.
#
# release_key: sets RELEASE_KEY and RELEASE_PUB, making them if needed.
release_key() {
    RELEASE_KEY=$CACHE/keys/release.pem
    RELEASE_PUB=$CACHE/keys/release.pub.pem
    if [ -f "$RELEASE_KEY" ] && [ -f "$RELEASE_PUB" ]; then
        return
    fi
    step keys "fwagent manifest keygen (es256) into $CACHE/keys"
    rm -rf "$CACHE/keys.tmp"
    mkdir -p "$CACHE/keys.tmp"
    quiet fwagent manifest keygen --alg es256 --out "$CACHE/keys.tmp/release.pem"
    publish "$CACHE/keys.tmp" "$CACHE/keys"
}
