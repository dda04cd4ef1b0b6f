#!/usr/bin/env bash
# Install mmcore and its plugins (editable) into the current Python 3.11.
#   bash scripts/setup.sh         # runtime: core + text/image/audio plugins
#   bash scripts/setup.sh --dev   # also the test and lint tools (pytest, ruff, mypy, transformers)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

packages=(-e .)
for plugin in plugins/mmcore-*/; do
  packages+=(-e "${plugin%/}")
done
if [ "${1:-}" = "--dev" ]; then
  packages[1]=".[test]"
fi

# torch==2.13.0 is pinned first so pip takes the CPU wheel and never a CUDA build. executorch comes
# next: mmcore's native extension and mmcore-image's resampler are compiled against the installed
# executorch (headers and libexecutorch.so) and Python, hence --no-build-isolation.
"$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PYTHON" -m pip install --quiet --disable-pip-version-check "executorch==1.5.1" "setuptools>=68" wheel
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-build-isolation "${packages[@]}"
"$PYTHON" -c 'import mmcore._native, mmcore_image._resample' 2>/dev/null \
  || echo "warning: native extensions not built (no C/C++ compiler?); mmcore falls back to slower paths" >&2
[ "${1:-}" = "--dev" ] && bash scripts/install-browser.sh   # headless Chromium for the page's browser tests
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "mmcore installed: $("$PYTHON" -c 'import mmcore; print(mmcore.__version__)')"
