#!/usr/bin/env bash
# The whole test suite: static checks (including `helm lint --strict` of the chart), unit tests, then
# integration tests against a fresh local control plane that is torn down afterwards, pass or fail
# (tests/chart.rs dry-runs, installs and upgrades the chart there with the same pinned helm).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
start=$SECONDS
step() { echo "==> $* ($((SECONDS - start))s)"; }

step "Debian packages"
hack/deps.sh test
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt
# The operator image, built as `make image` builds it, in the background: its release build ends in one
# long single-threaded LTO step, so it shares the 2 cores with the checks below instead of following them
# (it locks its own target/<triple>/release directory, not the debug one). tests/image.rs runs the image
# under runc and tests/release.rs publishes it; both wait for it below.
image_log="$(mktemp)"
hack/image.sh >"$image_log" 2>&1 &
image_pid=$!
trap 'kill "$image_pid" 2>/dev/null || true' EXIT
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
step "CRD drift check"
hack/check-crds.sh
# The pinned tools (the control plane, helm) are built first: helm lints the chart here, and the
# first build on a fresh machine takes minutes either way (cluster.sh up reuses them).
step "pinned tools"
tools="$(hack/build-tools.sh)"
step "helm lint --strict"
"$tools/helm" lint --strict charts/kaizen
"$tools/helm" lint --strict charts/kaizen -f charts/kaizen/ci/scoped-values.yaml
step "unit tests"
cargo test --locked --lib --bins
step "docs: the book builds and its links resolve"
hack/docs.sh
step "operator image (built in the background since the start)"
if ! wait "$image_pid"; then
  cat "$image_log" >&2
  echo "hack/image.sh failed" >&2
  exit 1
fi
tail -2 "$image_log"

step "local control plane"
export KAIZEN_RUN_DIR="${KAIZEN_RUN_DIR:-$here/.run-test}"
export KAIZEN_CLUSTER_NAME="${KAIZEN_CLUSTER_NAME:-kaizen-test}"
trap 'hack/cluster.sh down || true' EXIT
hack/cluster.sh up >/dev/null
# shellcheck disable=SC1091
source "$KAIZEN_RUN_DIR/env"
step "integration tests"
cargo test --locked --test '*' -- --test-threads "${KAIZEN_TEST_THREADS:-4}"
step "done"
