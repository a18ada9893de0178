#!/usr/bin/env bash
# Installs the Debian packages tiledraw builds and tests with. Idempotent: when
# everything is present it prints nothing and returns at once.
set -euo pipefail

packages=(
  g++ make cmake pkg-config binutils python3
  libcli11-dev nlohmann-json3-dev libpng-dev zlib1g-dev libicu-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libgomp1 libdnnl-dev
  python3-torch python3-numpy libopenblas0-openmp dataset-fashion-mnist
  clang-14 libclang-rt-14-dev libomp-14-dev
)

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
