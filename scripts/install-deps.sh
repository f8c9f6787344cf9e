#!/usr/bin/env bash
# Installs every Debian package cairn needs to build, run, test and benchmark.
# Idempotent and quiet: when everything is present it prints nothing and makes
# no network call. Run as root (or with sudo available).
set -euo pipefail

PKGS=(
  # build
  build-essential pkg-config meson ninja-build clang
  # libraries
  libmicrohttpd-dev libgnutls28-dev libcurl4-openssl-dev libsqlite3-dev libpq-dev libhiredis-dev
  libssl-dev libsodium-dev libisal-dev libjansson-dev libxml2-dev libyaml-dev
  libwslay-dev libzstd-dev libxxhash-dev
  # tests
  libcriterion-dev python3-pytest python3-boto3 python3-websockets gcovr
  awscli s3cmd rclone sqlite3 curl
  # a real browser for the CORS test (tests/integration/test_cors.py), headless
  chromium
  # servers the tests and benchmarks start themselves
  nginx-light redis-server postgresql
  # benchmark and fuzz tools
  libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts these services on install; cairn's tests start their own.
for svc in nginx redis-server postgresql; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
