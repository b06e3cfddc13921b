#!/usr/bin/env bash
# Installs the Debian packages faultline needs to build, test and run its demo:
# GCC with its sanitizer runtimes (ASan, UBSan, TSan) for the test builds, and
# clang with libFuzzer (libclang-rt-14-dev) for the fuzz targets.
# Only missing packages are installed; a machine that has them all is left alone.
set -euo pipefail

packages=(
  build-essential cmake make ninja-build pkg-config
  libgtest-dev libgmock-dev googletest
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libssl-dev
  libasan8 libubsan1 libtsan2
  clang libclang-rt-14-dev llvm
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
