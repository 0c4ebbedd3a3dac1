#!/usr/bin/env bash
# Shared by every action: find or build the Python environment an action runs in, print it as step outputs.
#   usage: ensure-env.sh <extra>      (extra = data | train | eval | eval-local | deploy | canary | serve)
#   env:   LLMOPS_INSTALL  true (default): a venv under the runner's tool cache, keyed by version + extra + Python,
#                          built once and reused on self-hosted runners;
#                          false: use LLMOPS_PYTHON as it is (GPU runners with a curated env), library from this repo.
#          LLMOPS_PYTHON   interpreter to use or to build the venv from (default: python3 on PATH).
# Outputs: python=<interpreter>, pythonpath=<dir to put on PYTHONPATH or empty>.
set -euo pipefail
extra="${1:?extra name}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
install="${LLMOPS_INSTALL:-true}"
base_py="${LLMOPS_PYTHON:-}"
[ -n "$base_py" ] || base_py="$(command -v python3 || command -v python || true)"
out="${GITHUB_OUTPUT:-/dev/stdout}"
if [ -z "$base_py" ] || ! "$base_py" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
  echo "::error::no Python >= 3.10 found (python input: '${LLMOPS_PYTHON:-}'). Fix: set the action's 'python' input to an interpreter path, or add actions/setup-python before this step."
  exit 2
fi
case "$install" in
  false)
    { echo "python=$base_py"; echo "pythonpath=$root"; } >>"$out"
    exit 0 ;;
  true) ;;
  *) echo "::error::input 'install' must be true or false, got '$install'"; exit 2 ;;
esac
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml" | head -n1)"
rev="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo nogit)"
pyver="$("$base_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
cache="${RUNNER_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}}/llmops-actions"
venv="$cache/${version}-${rev}-${extra}-py${pyver}"
if [ ! -f "$venv/.complete" ]; then
  echo "Creating the ${extra} environment in $venv (first run on this runner; later runs reuse it)"
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.building.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  "$base_py" -m venv "$tmp"
  "$tmp/bin/python" -m pip install --quiet --disable-pip-version-check "$root[$extra]"
  touch "$tmp/.complete"
  rm -rf "$venv"
  mv "$tmp" "$venv"
  trap - EXIT
  # venv scripts hard-code their path; the interpreter itself does not, so we always call $venv/bin/python.
fi
{ echo "python=$venv/bin/python"; echo "pythonpath="; } >>"$out"
