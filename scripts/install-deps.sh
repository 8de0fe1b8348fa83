#!/usr/bin/env bash
# Installs what Nightshift needs to build and test on Debian 12, from Debian's archive only.
# Idempotent: packages already present are skipped, and apt-get update runs only when needed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev nlohmann-json3-dev libsqlite3-dev libyaml-cpp-dev libspdlog-dev
  libcli11-dev libhowardhinnant-date-dev libgtest-dev tzdata
  sqlite3 curl python3 procps docker-compose
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  # --no-install-recommends: recommendations of some tools pull libboost1.74-dev, which
  # conflicts with libboost1.81-dev.
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
