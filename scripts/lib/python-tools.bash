# Sourced by scripts/test, scripts/e2e, scripts/check-template, scripts/sam-build and
# scripts/lib/sam-cli.bash: the project's Python tools in virtualenvs of their own, never in
# the system's site-packages (Debian 12 and Ubuntu refuse `pip install` there: PEP 668,
# "externally-managed-environment").
#
# - one virtualenv for moto, the MCP Python SDK, cfn-lint and cargo-lambda:
#   $SELFBUILD_TOOLS_DIR/python-tools (default ~/.cache/selfbuild/python-tools);
# - the SAM CLI keeps its own (scripts/lib/sam-cli.bash): it pins boto3, cfn-lint and
#   aws-sam-translator exactly, which would fight the versions above.
#
# `ensure_python_tools` creates the virtualenv and installs the pinned set when it differs,
# then puts its bin/ first on PATH and exports PYTHON_TOOLS (its python) and MOTO_SERVER.

SELFBUILD_TOOLS_DIR="${SELFBUILD_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/selfbuild}"
PYTHON_TOOLS_VENV="$SELFBUILD_TOOLS_DIR/python-tools"
# The pins, in one place.
PYTHON_TOOLS_REQUIREMENTS=(
  "moto[server]==5.2.6"
  "mcp==2.3.0"
  "cfn-lint==1.51.0"
  "cargo-lambda==1.9.2"
)

pt_log() { printf '\n==> %s\n' "$*" >&2; }

# Creates a virtualenv at $1 with python3's venv module, or an existing `virtualenv`
# command; with neither, says which Debian/Ubuntu package to install and fails.
make_venv() {
  local dir=$1 python=${PYTHON:-python3}
  command -v "$python" >/dev/null 2>&1 || {
    echo "error[MissingTool]: $python is not installed" >&2
    echo "  hint: sudo apt-get install python3 python3-venv   (Debian/Ubuntu)" >&2
    return 1
  }
  mkdir -p "$(dirname "$dir")"
  # Debian splits venv's pip bootstrap (ensurepip) into python3-venv: without it
  # `python3 -m venv` leaves a virtualenv without pip and fails.
  if "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    "$python" -m venv "$dir"
  elif command -v virtualenv >/dev/null 2>&1; then
    virtualenv --quiet --python "$python" "$dir"
  else
    local version
    version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || echo 3)
    echo "error[MissingTool]: $python cannot create a virtualenv: its venv module has no ensurepip" >&2
    echo "  hint: sudo apt-get install python3-venv   (Debian/Ubuntu; for this python: python$version-venv), then run this again" >&2
    return 1
  fi
}

# Whether the virtualenv at $1 has the requirements recorded in its stamp ($2…).
venv_current() {
  local dir=$1
  shift
  [ -x "$dir/bin/python" ] && [ -f "$dir/.selfbuild-requirements" ] &&
    [ "$(cat "$dir/.selfbuild-requirements")" = "$(printf '%s\n' "$@")" ]
}

# Makes the virtualenv at $1 hold exactly the pinned requirements $2…, creating it when
# missing or when the pins changed.
ensure_venv() {
  local dir=$1
  shift
  if venv_current "$dir" "$@"; then
    return 0
  fi
  pt_log "installing $* into the virtualenv $dir"
  rm -rf "$dir"
  make_venv "$dir" || return 1
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@" || return 1
  printf '%s\n' "$@" >"$dir/.selfbuild-requirements"
}

ensure_python_tools() {
  ensure_venv "$PYTHON_TOOLS_VENV" "${PYTHON_TOOLS_REQUIREMENTS[@]}" || return 1
  PATH="$PYTHON_TOOLS_VENV/bin:$PATH"
  PYTHON_TOOLS="$PYTHON_TOOLS_VENV/bin/python"
  MOTO_SERVER="$PYTHON_TOOLS_VENV/bin/moto_server"
  export PATH PYTHON_TOOLS MOTO_SERVER
}
