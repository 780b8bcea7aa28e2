#!/usr/bin/env bash
# Build (once per CPU feature set) and install llama-cpp-python, the embedded model server.
#
# Why not llama.cpp's default build: GGML_NATIVE=ON compiles for the build machine's CPU, so a venv
# or a pip-cached wheel built on an Intel AVX-512/AMX box dies with SIGILL on an AMD AVX2 box (and
# the native AMX path crashed on some Intel CPUs). Instead every x86-64 CPU with AVX2 gets the same
# portable build (AVX, AVX2, FMA, F16C, BMI2; no AVX-512, no AMX), which runs on Intel Haswell and
# later and on every AMD Zen. Only a CPU without AVX2 gets a native build, keyed by its exact flags.
# The wheel is cached outside the venv under that key, so rebuilding a venv never recompiles, and a
# wheel never moves to a CPU it was not built for. The chosen flags are recorded in the venv
# (share/teacherforge/llama-build.json) for `teacherforge doctor`.
#
#   VENV=.venv bash scripts/llama_build.sh
# Environment: VENV, TF_WHEEL_CACHE (default ~/.cache/teacherforge/wheels),
#              TF_LLAMA_NATIVE=1 (native build for this CPU, keyed by its flags).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
LLAMA_VERSION=0.3.36
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2 || true)
has() { [[ " $cpu_flags " == *" $1 "* ]]; }

portable_features=(avx avx2 fma f16c bmi2)
portable=1
for f in "${portable_features[@]}"; do has "$f" || portable=0; done
if [ "${TF_LLAMA_NATIVE:-0}" = 1 ] || [ "$portable" = 0 ]; then
    variant="native-$(printf '%s' "$cpu_flags" | tr ' ' '\n' | sort | sha256sum | cut -c1-12)"
    cmake_args="-DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF"
    requires=""
else
    variant="x86-64-avx2"
    cmake_args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF"
    requires="${portable_features[*]}"
fi
[ "$(uname -m)" = x86_64 ] || { variant="$(uname -m)-native"; cmake_args="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF"; requires=""; }

wheels="${TF_WHEEL_CACHE:-$HOME/.cache/teacherforge/wheels}/llama-cpp-python-$LLAMA_VERSION-$variant"
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama.cpp ($variant; first time on this kind of CPU, ~8-25 min on 2 cores)..." >&2
    mkdir -p "$wheels.tmp"
    log="$wheels.build.log"
    # --no-cache-dir: pip's own wheel cache is keyed by the sdist, not by CMAKE_ARGS.
    if ! CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        "${PIP[@]}" wheel -q --no-deps --no-cache-dir -w "$wheels.tmp" "llama-cpp-python==$LLAMA_VERSION" \
        >"$log" 2>&1; then
        echo "error: building llama-cpp-python failed; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    rm -rf "$wheels" && mv "$wheels.tmp" "$wheels"
fi
share="$VENV/share/teacherforge"
record=$(printf '{"variant": "%s", "requires_cpu_flags": "%s", "cmake_args": "%s", "wheel_dir": "%s"}' \
    "$variant" "$requires" "$cmake_args" "$wheels")
if [ "$(cat "$share/llama-build.json" 2>/dev/null)" != "$record" ] \
    || ! "$VENV/bin/python" -c "import llama_cpp" >/dev/null 2>&1; then
    if ! "${PIP[@]}" install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl >"$wheels.install.log" 2>&1; then
        echo "error: installing the llama-cpp-python wheel failed; last lines of $wheels.install.log:" >&2
        tail -n 20 "$wheels.install.log" >&2
        exit 1
    fi
    mkdir -p "$share"
    echo "$record" > "$share/llama-build.json"
fi
