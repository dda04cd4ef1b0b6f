#!/usr/bin/env bash
# Install mmcore and its plugins (editable) into the current Python 3.11.
#   bash scripts/setup.sh            # core + text/image/audio/adapter plugins + mmcore[torch] (the demo exporter)
#   bash scripts/setup.sh --minimal  # the torch-free runtime only: runs already exported programs
#   bash scripts/setup.sh --dev      # also the test and lint tools (pytest, ruff, mypy, transformers, a browser)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check)
mode=${1:-default}

core=".[torch]"
case "$mode" in
  --minimal) core="." ;;
  --dev) core=".[test]" ;;
  default) ;;
  *) echo "usage: bash scripts/setup.sh [--minimal|--dev]" >&2; exit 2 ;;
esac
packages=(-e "$core")
for plugin in plugins/mmcore-*/; do
  packages+=(-e "${plugin%/}")
done

step() { echo "==> $*"; }

if [ "$mode" != "--minimal" ]; then
  # Pinned and installed first, so that nothing later resolves another torch build.
  step "installing torch==2.13.0 for mmcore[torch]: the demo model's exporter, custom-op programs, the bindings fallback"
  "${PIP[@]}" "torch==2.13.0"
fi
# mmcore's build requirements (pyproject.toml [build-system]): the native extension compiles against
# this executorch's headers and links its libexecutorch.so. They are installed into this environment
# and the build uses them here (--no-build-isolation), so the extension is built for exactly this
# environment; `pip install .` with build isolation builds the same extension against the same pin.
step "installing the build requirements: setuptools>=68 and executorch==1.5.1 (the runtime mmcore links)"
"${PIP[@]}" "setuptools>=68" wheel "executorch==1.5.1"
step "installing mmcore ($core) and the plugins, editable; compiling mmcore._native and mmcore_image._resample"
"${PIP[@]}" --no-build-isolation "${packages[@]}"

step "checking the native extensions"
if ! "$PYTHON" - <<'EOF'
import sys
from mmcore import native
status = native.status()
print(f"    mmcore._native: {status.describe()}")
try:
    import mmcore_image._resample  # noqa: F401
    print("    mmcore_image._resample: built")
except ImportError:
    print("    mmcore_image._resample: not built; images are resized with Pillow (slower)")
sys.exit(0 if status.available else 1)
EOF
then
  echo "warning: mmcore._native is not usable (no C++ compiler?); mmcore falls back to ExecuTorch's Python bindings (slower, needs torch)" >&2
fi
if [ "$mode" = "--dev" ]; then
  step "installing headless Chromium for the chat page's browser tests"
  bash scripts/install-browser.sh
fi
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "mmcore $("$PYTHON" -c 'import mmcore; print(mmcore.__version__)') installed ($mode)"
