#!/usr/bin/env bash
# The browser tests drive Debian's chromium through Playwright (no browser download). Where it is missing and we
# are root with apt-get, install it; else say that those tests are skipped (under CI they fail instead).
set -euo pipefail
if [ -n "${GANFORGE_CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "chromium: not found; installing Debian's chromium (for the web page's browser tests)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || true
fi
command -v chromium >/dev/null || echo "chromium: not available here; the web page's browser tests are skipped"
