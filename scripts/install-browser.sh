#!/usr/bin/env bash
# Install headless Chromium and its WebDriver for the chat page's browser tests (tests/test_page_*.py),
# when they are missing: Debian/Ubuntu's `chromium` and `chromium-driver` through apt-get, only as
# root with apt-get available. Without them those tests skip, saying why.
set -euo pipefail
if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1; }; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: no chromium/chromedriver and no root apt-get; the chat page's browser tests will skip" \
    "(install chromium and chromium-driver to run them)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "installed $(chromium --version 2>/dev/null | head -1)"
