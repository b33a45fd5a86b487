#!/usr/bin/env bash
# The README's second set-up command, and what CI runs (.ci/run): a virtual environment with the
# whole toolchain, the system tools the cross-language tests need, the web page's npm packages,
# then the test suite.
#
#   bash scripts/setup_and_test.sh [--cpu-torch] [--no-test] [--strict] [-- PYTEST ARGS...]
#
#   --cpu-torch  install torch 2.13.0 from PyTorch's CPU index first (plain PyPI resolves it to
#                the CUDA build plus ~16 nvidia-* wheels, several GB)
#   --no-test    install only
#   --strict     a system tool that cannot be installed is an error, not a skipped test (CI)
#   LRF_VENV     the environment's folder (default .venv; CI uses .venv-ci)
#
# apt steps (Debian/Ubuntu) run only for what is missing: kotlinc, JUnit 4 and a JDK for the
# Android demo's Kotlin core, Chromium for the web page. They need root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

cpu_torch=0 run_tests=1 strict=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-torch) cpu_torch=1 ;;
    --no-test) run_tests=0 ;;
    --strict) strict=1 ;;
    --) shift; break ;;
    *) echo "setup_and_test.sh: error: unknown option $1 (see the comment at the top)" >&2
       exit 2 ;;
  esac
  shift
done

missing() {  # a tool the tests need could not be installed: the tests that need it skip
  if [ "$strict" = 1 ]; then echo "setup_and_test.sh: error: $1" >&2; exit 1; fi
  echo "setup_and_test.sh: warning: $1; the tests that need it will skip" >&2
}

venv="${LRF_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip >/dev/null
if [ "$cpu_torch" = 1 ]; then
  python -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
fi
python -m pip install -q -e ".[all]"

sudo=()
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo=(sudo); fi
if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ "${#sudo[@]}" -gt 0 ]; }; then
  # Kotlin core of the Android demo: kotlinc (Debian's `kotlin`) + JUnit 4 on the JVM.
  "${sudo[@]}" bash android_demo/core/ci_install.sh
  # Web demo: Debian's Chromium (the tests never download a browser).
  command -v chromium >/dev/null || { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
else
  command -v kotlinc >/dev/null || missing "no kotlinc, and no apt-get with root to install it"
  command -v chromium >/dev/null || missing "no chromium, and no apt-get with root to install it"
fi

# The page's pinned npm packages (onnxruntime-web, playwright-core, the tokenizer).
if command -v npm >/dev/null; then
  (cd web_demo && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
else
  missing "no npm (install Node.js 20 or later)"
fi

if [ "$run_tests" = 1 ]; then
  python -m pytest -q "$@"
fi
