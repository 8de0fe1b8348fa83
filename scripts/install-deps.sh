#!/usr/bin/env bash
# Installs what Nightshift needs to build on Debian 12, from Debian's archive only; with
# --test also what the tests need (headless Chromium, node and playwright-core from the npm
# registry). Idempotent: packages already present are skipped; apt-get update runs only when
# something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev nlohmann-json3-dev libsqlite3-dev libyaml-cpp-dev libspdlog-dev
  libcli11-dev libhowardhinnant-date-dev libgtest-dev tzdata
  sqlite3 curl python3 procps
)
with_tests=false
[ "${1:-}" = "--test" ] && with_tests=true
if $with_tests; then
  packages+=(docker-compose chromium fonts-dejavu-core)  # compose file check, dashboard browser test
  packages+=(clang-14 libclang-rt-14-dev)                 # libFuzzer targets (scripts/fuzz.sh)
  command -v npm >/dev/null || packages+=(nodejs npm)     # Debian's node only when none is installed
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  # --no-install-recommends: recommendations of some tools pull libboost1.74-dev, which
  # conflicts with libboost1.81-dev.
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# playwright-core drives the browser test, pinned by the lock file.
$with_tests || exit 0
browser_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
if [ -f "$browser_dir/package-lock.json" ] && [ ! -d "$browser_dir/node_modules/playwright-core" ]; then
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
