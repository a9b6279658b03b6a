#!/usr/bin/env bash
# Compile-checks the `cuda` feature on a machine without a GPU or a system CUDA toolkit.
#
# NVIDIA publishes the CUDA compiler and headers as Python wheels; this script installs them into
# a local virtual environment (.venv-cuda, ignored by git), points candle's build scripts at them
# and runs `cargo check` with `--features cuda` for every target of the workspace. candle-kernels'
# build script compiles all of candle's CUDA kernels with nvcc during this check, so it also proves
# that they build with this toolkit. Nothing here needs a GPU; running the result does.
#
# Versions: cudarc 0.19 (candle 0.11's CUDA binding) knows CUDA up to 13.4, so the toolkit is pinned
# to 13.4 (nvcc with its crt and nvvm parts, which pip would otherwise take from a newer release,
# plus the CCCL headers that cuda_fp16.h includes). The kernels are compiled for compute
# capability $CUDA_COMPUTE_CAP (default 90: H100/H200).
#
# Usage: scripts/check-cuda.sh            (first run downloads ~50 MB of wheels)
#        DGATING_CUDA_VENV=/path scripts/check-cuda.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DGATING_CUDA_VENV:-$root/.venv-cuda}"
nvcc_version="13.4.92"
# CCCL (libcu++'s <nv/target>, which cuda_fp16.h includes) has its own version numbers.
cccl_version="13.3.5.0.6"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv" || exit 3
fi
# Exit status 3: the toolkit could not be installed (no registry); anything else non-zero: the
# workspace does not build with CUDA.
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "nvidia-cuda-nvcc==$nvcc_version" "nvidia-cuda-runtime==$nvcc_version" \
    "nvidia-cuda-crt==$nvcc_version" "nvidia-nvvm==$nvcc_version" "nvidia-cuda-cccl==$cccl_version" || {
    echo "check-cuda: could not install the CUDA $nvcc_version wheels from PyPI" >&2
    exit 3
}

cuda="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')"
if [[ ! -x "$cuda/bin/nvcc" ]]; then
    echo "check-cuda: no nvcc in $cuda/bin after installing the wheels" >&2
    exit 1
fi

export PATH="$cuda/bin:$PATH"
export CUDA_HOME="$cuda" CUDA_PATH="$cuda" CUDA_ROOT="$cuda"
export CUDARC_CUDA_VERSION=13040
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
# A separate target directory: the CUDA build of candle never evicts the CPU build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/cuda-check}"

nvcc --version | tail -n 1
cd "$root"
cargo check --workspace --all-targets --locked --features dgating-cli/cuda,dgating-bench/cuda
echo "check-cuda: the workspace compiles with --features cuda (CUDA $nvcc_version, sm_$CUDA_COMPUTE_CAP)"
