#!/usr/bin/env bash
# Sets up a Debian 12 machine for varpro-rbf, builds it, then runs the demo job or the tests.
#
#   tools/bootstrap.sh demo [options]   install what is missing, build, run configs/demo.yaml on
#                                       2 ranks (options go to varpro-rbf, e.g. --force)
#   tools/bootstrap.sh test             install what is missing, build, run the whole test suite
#
# Safe to run again: it installs only missing packages and rebuilds only what changed.
set -euo pipefail

mode=${1:-demo}
if [ $# -gt 0 ]; then shift; fi
case "$mode" in
  demo | test) ;;
  *)
    echo "usage: $0 demo [varpro-rbf options] | test" >&2
    exit 2
    ;;
esac
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${VARPRO_BUILD_DIR:-$top/build}

packages=(
  build-essential meson ninja-build pkg-config git
  openmpi-bin libopenmpi-dev
  libpetsc-real-dev libscalapack-openmpi-dev libopenblas0-pthread
  libyaml-dev libhdf5-openmpi-dev hdf5-tools librandom123-dev
  python3 python3-numpy python3-h5py python3-matplotlib
  clang-format
  # the SLURM test (tests/slurm): a one-node cluster; srun --mpi=pmix loads libpmix.so of libpmix-dev
  munge slurmctld slurmd slurm-client libpmix-dev
)

# Packages: install only those missing
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Open MPI refuses root without these; one BLAS thread per rank
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OPENBLAS_NUM_THREADS=1

# Build, tuned for this machine's CPU
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$top" -Dnative=true
fi
meson compile -C "$build"

case "$mode" in
  demo)
    cd "$top"
    mpirun -n 2 "$build/varpro-rbf" configs/demo.yaml "$@"
    ;;
  test)
    status=0
    meson test -C "$build" --print-errorlogs --num-processes 2 || status=$?
    /usr/bin/python3 "$top/tools/testcount.py" "$build/meson-logs/testlog.json"
    exit $status
    ;;
esac
