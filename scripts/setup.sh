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

# torch==2.13.0 is pinned first so pip takes the CPU wheel and never a CUDA build.
"$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$PYTHON" -m pip install --quiet --disable-pip-version-check "${packages[@]}"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "mmcore installed: $("$PYTHON" -c 'import mmcore; print(mmcore.__version__)')"
