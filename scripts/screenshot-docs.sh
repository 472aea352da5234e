#!/usr/bin/env bash
# Builds the documentation site, serves it on localhost and takes full-page screenshots of a few pages with
# headless Chromium (Debian: apt-get install chromium), to look at what a reader sees.
# Usage: bash scripts/screenshot-docs.sh [OUT_DIR] [PAGE ...]   (default pages: landing, a guide, an API page, results)
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(realpath -m "${1:-build/screenshots}")"
shift || true
pages=("${@:-index.html guides/losses/index.html api/losses/index.html results/index.html}")
CHROMIUM="${CHROMIUM:-chromium}"
site="$(mktemp -d)"
profile="$(mktemp -d)"
port="${PORT:-8765}"
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict --quiet --site-dir "$site"
.venv/bin/python -m http.server "$port" --bind 127.0.0.1 --directory "$site" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$site" "$profile"' EXIT
sleep 1
mkdir -p "$out"
for page in ${pages[@]}; do
  name="$(echo "${page%index.html}" | tr '/' '-' | sed 's/-$//')"
  name="${name:-index}"
  # The flags keep Chromium off the network (this machine reaches none) and out of the user's profile.
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
      --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
      --window-size=1280,"${HEIGHT:-2400}" --screenshot="$out/$name.png" "http://127.0.0.1:$port/$page" 2>/dev/null
  echo "$out/$name.png"
done
