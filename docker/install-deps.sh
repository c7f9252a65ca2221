#!/bin/sh
# Installs requirements.lock into a virtual environment, every file checked against the lock's hashes.
# usage: install-deps.sh PIP LOCK [TORCH_INDEX]
# With TORCH_INDEX (PyTorch's CPU wheel index), torch and torchvision of the lock's versions come from
# there (CPU builds, checked by version: their hashes differ from the lock's), and the packages only
# the CUDA builds need (nvidia-*, cuda-*, triton) are left out. `--filter LOCK` prints that lock.
set -eu
cpu_lock() {
  awk '/^[^ #]/ { skip = ($1 ~ /^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==/) } !skip' "$1"
}
if [ "$1" = "--filter" ]; then cpu_lock "$2"; exit 0; fi
pip=$1 lock=$2 index=${3:-}
if [ -z "$index" ]; then
  exec "$pip" install --require-hashes --no-deps -r "$lock"
fi
version() { sed -n "s/^$1==\([^ ]*\).*/\1/p" "$lock"; }
"$pip" install --no-deps --index-url "$index" "torch==$(version torch)" "torchvision==$(version torchvision)"
cpu_lock "$lock" > /tmp/requirements-cpu.lock
"$pip" install --require-hashes --no-deps -r /tmp/requirements-cpu.lock
