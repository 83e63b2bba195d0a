# Sourced by scripts/check-template and scripts/sam-build: the pinned AWS SAM CLI.
#
# aws-sam-cli pins its dependencies exactly (aws-sam-translator, boto3, cfn-lint), which
# would fight moto's and cfn-lint 1.51.0's in the shared site-packages, so it lives in its
# own virtualenv under $SELFBUILD_TOOLS_DIR (default ~/.cache/selfbuild).

SAM_CLI_VERSION=1.170.0
# The cfn-lint `sam validate --lint` runs (aws-sam-cli 1.170.0 requires >=1.52,<1.59).
SAM_CFN_LINT_VERSION=1.58.0
# shellcheck source=python-tools.bash
source "$(dirname "${BASH_SOURCE[0]}")/python-tools.bash"
SAM_VENV="$SELFBUILD_TOOLS_DIR/aws-sam-cli-$SAM_CLI_VERSION"
SAM="$SAM_VENV/bin/sam"

log() { printf '\n==> %s\n' "$*" >&2; }

# Installs the pinned SAM CLI into its virtualenv unless it is there already.
ensure_sam_cli() {
  if [ "$("$SAM" --version 2>/dev/null)" = "SAM CLI, version $SAM_CLI_VERSION" ]; then
    return
  fi
  ensure_venv "$SAM_VENV" "aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint==$SAM_CFN_LINT_VERSION"
}
