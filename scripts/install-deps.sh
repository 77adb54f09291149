#!/usr/bin/env bash
# Installs what tongdao needs to build, test and run, and only what is missing.
# Idempotent: a second run installs nothing and takes about a second.
#   scripts/install-deps.sh            everything (build, tests, interop peers, benches)
#   scripts/install-deps.sh build      only what a Release build needs (the chat page and the
#                                      SDK included: node, npm and the pinned node_modules),
#                                      and its Debian packages (cpack: dpkg-dev, file)
set -euo pipefail

build_pkgs=(
  build-essential cmake ninja-build pkg-config
  libssl-dev zlib1g-dev libasio-dev libsqlite3-dev libhiredis-dev libboost-json1.81-dev libcli11-dev libtomlplusplus-dev ca-certificates openssl
  nodejs
  file
)
test_pkgs=(
  clang libclang-rt-14-dev libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-websockets redis-server redis-tools chromium
  libboost1.81-dev libwebsocketpp-dev libsimdjson-dev
  nginx libnss3-tools
)

want=("${build_pkgs[@]}")
[ "${1:-all}" = build ] || want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq || true
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # nginx is here for tests/deploy, which runs its own from a temporary directory: the
  # system service the package starts (a web server on port 80) is stopped and disabled,
  # only when this script installed it.
  if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null 2>&1 &&
     [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi

# npm is shipped inside the nodesource nodejs package; Debian's own nodejs needs the npm package
# (so it is not in the lists above: beside nodesource's nodejs it would conflict).
if ! command -v npm >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -qq --no-install-recommends npm
fi

# Web tooling (typescript, for web/ in every build) and test peers from the npm registry,
# pinned by package-lock.json; again whenever the lock file is newer than the install.
if [ -f package-lock.json ]; then
  if [ ! -d node_modules ] || [ ! -f node_modules/typescript/bin/tsc ] ||
     [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "install-deps: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi
