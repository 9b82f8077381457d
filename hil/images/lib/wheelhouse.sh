# The offline wheelhouse of docs/gateway-install.md: fwagent's own wheel and
# the wheels of its locked dependencies for the device's CPU and Python.
# Sourced by hil/images/build.
#
# build_wheelhouse DIR: fills DIR with the wheels and requirements.txt and
# sets WHEELHOUSE_HASH (over the wheels' names and contents).
# Uses GUEST_ARCH (x86_64, aarch64), GUEST_PYTHON (3.11), GUEST_GLIBC (2.36).
#
# The dependency wheels are cached by the exported requirements and the
# target; fwagent's wheel is built every time (hatchling builds it
# reproducibly, so an unchanged tree gives the same bytes and the same hash).

build_wheelhouse() {
    local dir=$1 requirements key deps platforms=() n
    step wheelhouse "fwagent and its locked dependencies as wheels for CPython $GUEST_PYTHON on $GUEST_ARCH"
    requirements=$SCRATCH/requirements.txt
    uv export --quiet --project "$REPO" --no-dev --frozen --no-hashes --no-emit-project >"$requirements"
    key=$(hash_text "$(grep -v '^ *#' "$requirements")" "$GUEST_ARCH" "$GUEST_PYTHON" "$GUEST_GLIBC")
    deps=$CACHE/wheels/$GUEST_ARCH-py$GUEST_PYTHON-$key
    if [ ! -d "$deps" ]; then
        # Every manylinux level the device's glibc runs (PEP 600), newest first,
        # and the legacy manylinux2014 alias: cbor2, for one, ships only
        # manylinux_2_28 wheels.
        for n in $(seq "${GUEST_GLIBC#2.}" -1 17); do
            platforms+=(--platform "manylinux_2_${n}_${GUEST_ARCH}")
        done
        platforms+=(--platform "manylinux2014_${GUEST_ARCH}")
        rm -rf "$deps.tmp"
        quiet uvx --from pip pip download --no-deps --only-binary=:all: "${platforms[@]}" \
            --python-version "$GUEST_PYTHON" --implementation cp --abi "cp${GUEST_PYTHON/./}" \
            --dest "$deps.tmp" -r "$requirements"
        publish "$deps.tmp" "$deps"
        prune "$deps" "$CACHE/wheels/$GUEST_ARCH-py$GUEST_PYTHON-"*
    fi
    rm -rf "$SCRATCH/fwagent-wheel"
    quiet uv build --quiet --wheel --out-dir "$SCRATCH/fwagent-wheel" "$REPO"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$deps"/*.whl "$SCRATCH"/fwagent-wheel/fwagent-*.whl "$requirements" "$dir/"
    WHEELHOUSE_HASH=$(hash_files "$dir"/*.whl)
    log "wheelhouse: $(ls "$dir"/*.whl | wc -l) wheels, hash $WHEELHOUSE_HASH"
}
