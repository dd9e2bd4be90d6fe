#!/usr/bin/env bash
# Runs the benchmarks (they print their figures) on a fresh local control plane, stopped afterwards.
#   hack/bench.sh                 every benchmark
#   hack/bench.sh action_items    one of them (a [[bench]] name in Cargo.toml)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
export GOTOOLCHAIN=local
export KAIZEN_RUN_DIR="${KAIZEN_RUN_DIR:-$here/.run-bench}"
export KAIZEN_CLUSTER_NAME="${KAIZEN_CLUSTER_NAME:-kaizen-bench}"
trap 'hack/cluster.sh down || true' EXIT
hack/cluster.sh up >/dev/null
# shellcheck disable=SC1091
source "$KAIZEN_RUN_DIR/env"
if (($# == 0)); then
  cargo bench --locked
else
  for name in "$@"; do cargo bench --locked --bench "$name"; done
fi
