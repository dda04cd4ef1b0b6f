#!/usr/bin/env bash
# Install the browsers of the chat page's tests (tests/test_chat_page*.py) when they are missing:
# Debian/Ubuntu's `chromium` and `chromium-driver` (Selenium) and `firefox-esr` (driven over
# Marionette: Debian has no geckodriver), through apt-get, only as root with apt-get available.
# Without them those tests skip, saying why.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
packages=()
if ! have chromedriver || ! { have chromium || have chromium-browser || have google-chrome; }; then
  packages+=(chromium chromium-driver)
fi
if ! have firefox && ! have firefox-esr; then
  packages+=(firefox-esr)
fi
if [ ${#packages[@]} = 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! have apt-get; then
  echo "note: missing ${packages[*]} and no root apt-get; the chat page's browser tests will skip" \
    "(install ${packages[*]} to run them)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
echo "installed ${packages[*]}"
