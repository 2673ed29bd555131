#!/usr/bin/env bash
# Everything a GPU can tell in one call, in under 10 minutes on one H100/H200: build spinforce
# with its CUDA kernels (for this machine's GPU only), run the `gpu` tests, then the GPU column of
# every benchmark (bench/gpu.py), which writes bench/results/gpu-*.json.
#
#   bench/gpu.sh [--quick]
# Needs a CUDA toolkit whose major version matches torch's (see `spinforce info`) and the Python
# environment to build in (torch 2.13.0, scikit-build-core, pybind11, numpy, pytest) active.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
log() { echo "== [$(( $(date +%s) - start )) s] $*"; }

arch=$(python -c "import torch; p = torch.cuda.get_device_properties(0); print(f'{p.major}{p.minor}')")
log "build for sm_$arch (SPINFORCE_CUDA=ON: no silent CPU-only fallback)"
mkdir -p build
if ! SPINFORCE_CUDA=ON SPINFORCE_CUDA_ARCHITECTURES=$arch CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    python -m pip install --no-build-isolation --no-deps --force-reinstall -v . > build/gpu-build.log 2>&1; then
  # The compiler's and linker's own messages, not pip's summary of them.
  grep -E -A6 "error|undefined reference" build/gpu-build.log | head -80
  echo "build failed; the whole log is build/gpu-build.log"
  exit 1
fi
spinforce info

log "gpu tests"
tests_rc=0
(cd /tmp && python -m pytest -q -m gpu -p no:cacheprovider "$OLDPWD/tests") || tests_rc=$?

log "benchmarks, GPU column"
python bench/gpu.py "$@" || tests_rc=$((tests_rc == 0 ? 1 : tests_rc))
log "done; results in bench/results/gpu-*.json"
exit $tests_rc
