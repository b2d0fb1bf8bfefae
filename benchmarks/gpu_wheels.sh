#!/usr/bin/env bash
# benchmarks/gpu_wheels.sh: on a machine with network, fetch into .whl/ the wheels that brachymc needs
# and a lent GPU machine (CUDA image with Python 3.12, CuPy, NumPy, SciPy, h5py, matplotlib; no
# network) lacks, so that benchmarks/gpu_check.sh can install brachymc there. .whl/ is ignored by git;
# name it in the device call's carry list.
set -eu
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any"
for pkg in xraylib pydicom pymedphys dask distributed dicompyler-core partd locket tblib tornado zict tomlkit \
           pytest-timeout; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d .whl "$pkg"
done
ls -la .whl
