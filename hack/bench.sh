#!/usr/bin/env bash
# Runs the benchmarks (they print their figures) on a fresh local control plane, stopped afterwards.
#   hack/bench.sh                 action_items, canary, decode and cache
#   hack/bench.sh action_items    one of them (a [[bench]] name in Cargo.toml)
#   hack/bench.sh peers           side by side with Argo Rollouts and Flagger: builds them from source
#                                 first (hack/peers/build.sh) and runs the control plane with its audit log
#                                 (KAIZEN_BENCH_PEERS_N=100,1000 for both sizes,
#                                 KAIZEN_BENCH_PEERS_PAIRS=replicas|gateway for one pair,
#                                 KAIZEN_BENCH_PEERS_ONLY=kaizen|peer for one side of each pair)
#   hack/bench.sh rest            10,000 Canaries at rest beside 10,000 Argo Rollouts (builds Argo too;
#                                 KAIZEN_BENCH_REST_N, KAIZEN_BENCH_REST_IDLE seconds,
#                                 KAIZEN_BENCH_REST_ONLY=kaizen|argo for one side)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
export GOTOOLCHAIN=local
export KAIZEN_RUN_DIR="${KAIZEN_RUN_DIR:-$here/.run-bench}"
export KAIZEN_CLUSTER_NAME="${KAIZEN_CLUSTER_NAME:-kaizen-bench}"
benches=("$@")
((${#benches[@]})) || benches=(action_items canary decode cache)
if [[ " ${benches[*]} " == *" peers "* || " ${benches[*]} " == *" rest "* ]]; then
  hack/peers/build.sh >&2
  export KAIZEN_AUDIT=1
fi
trap 'hack/cluster.sh down || true' EXIT
hack/cluster.sh up >/dev/null
# shellcheck disable=SC1091
source "$KAIZEN_RUN_DIR/env"
for name in "${benches[@]}"; do cargo bench --locked --bench "$name"; done
