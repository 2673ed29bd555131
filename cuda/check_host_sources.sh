#!/usr/bin/env bash
# Compile-only check of the C++ sources' CUDA branches (#ifdef SPINFORCE_WITH_CUDA) against the
# active Python environment's torch headers and the CUDA toolkit's: a CUDA build of spinforce
# needs a CUDA build of torch to link, but these branches compile with any torch, so machines
# without a GPU still catch a broken CUDA build.
#   bash cuda/check_host_sources.sh        (nvcc on PATH, the build environment active)
set -euo pipefail
cd "$(dirname "$0")/.."
# The toolkit's own include directory, as nvcc reports it (nvcc may be a wrapper script).
cuda_include=$(echo 'int main() {}' > /tmp/spinforce_check_$$.cu && nvcc --dryrun -c /tmp/spinforce_check_$$.cu 2>&1 |
  sed -n 's/.*INCLUDES="-I\([^"]*\)".*/\1/p' | head -1)
rm -f /tmp/spinforce_check_$$.cu
[ -f "$cuda_include/cuda_runtime.h" ] || { echo "nvcc reports no include directory with cuda_runtime.h ('$cuda_include')" >&2; exit 1; }
read -r torch_include pybind_include python_include < <(python -c "
import os, sysconfig, pybind11, torch
print(os.path.join(os.path.dirname(torch.__file__), 'include'), pybind11.get_include(), sysconfig.get_paths()['include'])")
status=0
for source in $(grep -rl SPINFORCE_WITH_CUDA cpp --include='*.cpp'); do
  echo "   $source"
  "${CXX:-g++}" -std=gnu++17 -fsyntax-only -fopenmp -DSPINFORCE_WITH_CUDA=1 \
    -DSPINFORCE_CUDA_ARCHITECTURES='"check"' -DSPINFORCE_TORCH_VERSION='"check"' -Icpp \
    -isystem "$cuda_include" -isystem "$python_include" -isystem "$pybind_include" \
    -isystem "$torch_include" -isystem "$torch_include/torch/csrc/api/include" "$source" || status=1
done
exit $status
