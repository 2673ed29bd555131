#!/usr/bin/env bash
# A user's install with the torch that PyPI serves (2.13.0, the CUDA 13 build: ~5 GB installed
# with its nvidia-* wheels), in a fresh virtual environment, on a machine without a GPU:
#   1. no CUDA toolkit visible: `pip install ".[test]"` exactly as the README says (build
#      isolation included) must build CPU-only, say so in one line, and pass the test suite;
#   2. nvcc visible: the GPU user's recipe (`pip install --no-build-isolation .` against the torch
#      already installed) must compile the CUDA sources, or stop with the line that names the
#      missing toolkit piece; the build must import, report its kernels, and pass the CPU tests.
# pip runs with --isolated and no configuration file, so no local wheel index or mirror is used.
#
#   .ci/install-check.sh [WORKDIR]        WORKDIR defaults to a new temporary directory
# Environment: INSTALL_CHECK_REUSE_VENV=1 keeps WORKDIR/venv from an earlier run (torch installed
# once), INSTALL_CHECK_VARIANTS="1 2" (default both), INSTALL_CHECK_ARCHS=90 (GPU
# architectures compiled in variant 2; empty for the default list of every architecture torch
# supports), INSTALL_CHECK_PYTEST="-q" (arguments for the test runs).
# Not part of .ci/run: two ~5 GB torch installs (the venv's and pip's isolated build
# environment's) and two full builds do not fit its time budget. Measured on a shared, heavily
# loaded 2-core machine: variant 1 built in 42 min (build environment included), variant 2 (the
# CUDA kernels for sm_90) in 13 min; each test run took ~2 min (202 passed, 28 skipped); the
# torch install of the venv took ~20 min.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d -t spinforce-install-XXXXXX)}
variants=${INSTALL_CHECK_VARIANTS:-1 2}
archs=${INSTALL_CHECK_ARCHS-90}
pytest_args=${INSTALL_CHECK_PYTEST:--q}
mkdir -p "$work"
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT || true
pip_() { python -m pip --isolated --disable-pip-version-check "$@"; }
stamp() { date +%s; }
t0=$(stamp)

if [ -n "${INSTALL_CHECK_REUSE_VENV:-}" ] && [ -x "$work/venv/bin/python" ]; then
  echo "== reusing the virtual environment in $work/venv (INSTALL_CHECK_REUSE_VENV)"
  . "$work/venv/bin/activate"
else
  echo "== fresh virtual environment in $work/venv"
  rm -rf "$work/venv"
  python3 -m venv "$work/venv"
  . "$work/venv/bin/activate"
fi
echo "== torch 2.13.0 from PyPI"
pip_ install -q torch==2.13.0
python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
t_torch=$(stamp)

# Directories that hold nvcc (on PATH, the usual toolkit places): hidden in variant 1 both from
# PATH and from CMake's own search, as on a machine without a toolkit.
nvcc_dirs=$( (for n in $(which -a nvcc 2>/dev/null) /usr/local/cuda*/bin/nvcc /opt/cuda*/bin/nvcc; do
  if [ -x "$n" ]; then dirname "$n"; fi; done) | sort -u | tr '\n' ';')
nvcc_dirs=${nvcc_dirs%;}

run_tests() {  # the suite against the installed package, from outside the source tree
  (cd "$work" && python -m pytest $pytest_args -p no:cacheprovider "$repo/tests")
}

for v in $variants; do
  case $v in
  1)
    echo "== variant 1: no CUDA toolkit visible (hidden: ${nvcc_dirs:-none}); pip install \".[test]\""
    clean_path=$(echo "$PATH" | tr ':' '\n' | grep -v -x -F -f <(echo "$nvcc_dirs" | tr ';' '\n') | paste -sd:)
    t=$(stamp)
    env PATH="$clean_path" CMAKE_ARGS="-DCMAKE_IGNORE_PATH=$nvcc_dirs" \
      python -m pip --isolated --disable-pip-version-check install -v "$repo[test]" > "$work/variant1-build.log" 2>&1 \
      || { tail -40 "$work/variant1-build.log"; echo "variant 1: pip install FAILED"; exit 1; }
    grep -h "spinforce: " "$work/variant1-build.log" | sed 's/^ *//' | sort -u
    echo "variant 1: build $(( $(stamp) - t )) s"
    python -c "import spinforce, spinforce._core as c; assert not c.cuda_kernels; print('cuda_kernels =', c.cuda_kernels)"
    spinforce info
    t=$(stamp)
    run_tests
    echo "variant 1: tests $(( $(stamp) - t )) s"
    ;;
  2)
    echo "== variant 2: nvcc visible ($(command -v nvcc || echo none)); pip install --no-build-isolation ."
    pip_ install -q "scikit-build-core>=0.10" "pybind11>=2.12" numpy
    t=$(stamp)
    env SPINFORCE_CUDA_ARCHITECTURES="$archs" \
      python -m pip --isolated --disable-pip-version-check install -v --no-build-isolation --no-deps \
      --force-reinstall "$repo" > "$work/variant2-build.log" 2>&1 \
      || { grep -h "spinforce: \|error" "$work/variant2-build.log" | tail -40; echo "variant 2: pip install FAILED"; exit 1; }
    grep -h "spinforce: " "$work/variant2-build.log" | sed 's/^ *//' | sort -u
    echo "variant 2: build $(( $(stamp) - t )) s"
    spinforce info
    if python -c "import spinforce._core as c, sys; sys.exit(0 if c.cuda_kernels else 1)"; then
      echo "variant 2: CUDA kernels compiled and the extension imports"
    else
      echo "variant 2: CPU-only build (the line above says which toolkit piece is missing)"
    fi
    t=$(stamp)
    run_tests
    echo "variant 2: tests $(( $(stamp) - t )) s"
    ;;
  *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
done
echo "== install check passed in $(( $(stamp) - t0 )) s (torch download and install $(( t_torch - t0 )) s)"
