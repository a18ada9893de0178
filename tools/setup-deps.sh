#!/usr/bin/env bash
# Installs the Debian packages tiledraw needs. Idempotent: when everything is
# present it prints nothing and returns at once.
#   tools/setup-deps.sh          what the tests need too (make test)
#   tools/setup-deps.sh program  only what building and running the program
#                                needs (make demo): no PyTorch, no test libraries
set -euo pipefail

packages=(
  g++ make cmake pkg-config binutils
  libcli11-dev nlohmann-json3-dev libpng-dev zlib1g-dev libicu-dev libfreetype-dev fonts-dejavu-core
  libcpp-httplib-dev libssl-dev
  libgomp1 libdnnl-dev
)
if [ "${1:-all}" != program ]; then
  packages+=(
    python3 libgtest-dev libgmock-dev libbenchmark-dev
    python3-torch python3-numpy libopenblas0-openmp dataset-fashion-mnist
    clang-14 libclang-rt-14-dev libomp-14-dev nginx-light chromium
  )
fi

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-deps: missing packages: ${missing[*]}; run as root (or with sudo) to install them" >&2
  exit 1
fi
echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
