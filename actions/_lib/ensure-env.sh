#!/usr/bin/env bash
# Shared by every action: find or build the Python environment an action runs in, print it as step outputs.
#   usage: ensure-env.sh <extra>      (extra = data | train | eval | eval-local | deploy | canary | serve)
#          ensure-env.sh --path <extra>   only print the venv folder that would be used (for tests and debugging)
#          ensure-env.sh --check <extra>  print the venv folder and why it would not be used ("ok" if it would)
#   env:   LLMOPS_INSTALL  true (default): a venv under the runner's tool cache, keyed by version + a hash of the
#                          code it installs (pyproject.toml and llmops/, so it changes with the code, .git or not)
#                          + extra + Python, built once and reused on self-hosted runners;
#                          false: use LLMOPS_PYTHON as it is (GPU runners with a curated env), library from this repo.
#          LLMOPS_PYTHON   interpreter to use or to build the venv from (default: python3 on PATH).
# A cached venv is used only when it is ours: owned by this user, not writable by others, its .complete stamp names
# this key and interpreter, and its bin/python is a link to that very interpreter (a planted folder with a marker
# and a script called python is rebuilt, never run).
# Outputs: python=<interpreter>, pythonpath=<dir to put on PYTHONPATH or empty>.
set -euo pipefail
only_path=false
only_check=false
if [ "${1:-}" = "--path" ]; then only_path=true; shift; fi
if [ "${1:-}" = "--check" ]; then only_check=true; shift; fi
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
code_hash="$(cd "$root" && find pyproject.toml llmops -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
pyver="$("$base_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
real_py="$("$base_py" -c 'import os, sys; print(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))')"
cache="${RUNNER_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}}/llmops-actions"
key="${version}-${code_hash}-${extra}-py${pyver}"
venv="$cache/$key"
stamp="$key $real_py"
if $only_path; then echo "$venv"; exit 0; fi

# Why the folder at $venv may not be used (empty: it may).
distrust() {
  local v="$1"
  [ -e "$v" ] || [ -L "$v" ] || { echo "absent"; return; }
  [ ! -L "$v" ] && [ -d "$v" ] || { echo "not a plain folder"; return; }
  [ -O "$v" ] || { echo "not owned by $(id -un)"; return; }
  [ -z "$(find "$v" "$v/bin" -maxdepth 0 -perm /022 2>/dev/null)" ] || { echo "writable by other users"; return; }
  [ -f "$v/.complete" ] && [ "$(cat "$v/.complete")" = "$stamp" ] || { echo "no matching .complete stamp"; return; }
  [ -L "$v/bin/python" ] && [ "$(readlink -f "$v/bin/python")" = "$real_py" ] \
    || { echo "bin/python is not a link to $real_py"; return; }
  "$v/bin/python" -c 'import llmops' 2>/dev/null || { echo "llmops does not import"; return; }
}

why="$(distrust "$venv")"
if $only_check; then echo "$venv ${why:-ok}"; exit 0; fi
if [ -n "$why" ]; then
  if [ "$why" != "absent" ]; then
    echo "::warning::not using the cached environment $venv ($why); building a new one"
  fi
  echo "Creating the ${extra} environment in $venv (first run on this runner; later runs reuse it)"
  mkdir -p "$cache"
  if [ ! -O "$cache" ] || [ -n "$(find "$cache" -maxdepth 0 -perm /022)" ]; then
    echo "::error::the tool cache folder $cache is not owned by $(id -un) or is writable by others. Fix: give the runner its own tool cache (RUNNER_TOOL_CACHE) or chmod go-w it."
    exit 2
  fi
  tmp="$(mktemp -d "$cache/.building.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  "$base_py" -m venv "$tmp"
  "$tmp/bin/python" -m pip install --quiet --disable-pip-version-check "$root[$extra]"
  printf '%s' "$stamp" >"$tmp/.complete"
  rm -rf "$venv"
  mv "$tmp" "$venv"
  trap - EXIT
  # venv scripts hard-code their path; the interpreter itself does not, so we always call $venv/bin/python.
fi
{ echo "python=$venv/bin/python"; echo "pythonpath="; } >>"$out"
