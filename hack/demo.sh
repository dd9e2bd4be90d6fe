#!/usr/bin/env bash
# Brings up the local control plane, installs the CRDs, runs the operator and applies the examples.
# The demo has its own run dir (hack/.run, which `make down` stops) and cluster name, and every port is
# picked free, so `make test` and `make bench` can run while the demo is up.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
export KAIZEN_RUN_DIR="$here/.run" KAIZEN_CLUSTER_NAME=kaizen
run="$KAIZEN_RUN_DIR"
hack/cluster.sh up >/dev/null
# shellcheck disable=SC1091
source "$run/env"
cargo build --locked --bin kaizen
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=Established crd --all --timeout=60s >/dev/null
if [[ -f "$run/operator.pid" ]]; then kill "$(cat "$run/operator.pid")" 2>/dev/null || true; fi
port="$(hack/cluster.sh free-port)"
nohup "${CARGO_TARGET_DIR:-target}/debug/kaizen" run --listen "127.0.0.1:$port" --namespace demo \
  >"$run/operator.log" 2>&1 &
echo $! >"$run/operator.pid"
deadline=$((SECONDS + 120))
# Ready, and ours: the operator we started still runs (it exits if the port was taken meanwhile).
until kill -0 "$(cat "$run/operator.pid")" 2>/dev/null && curl -fsS "127.0.0.1:$port/readyz" >/dev/null 2>&1; do
  if ((SECONDS >= deadline)) || ! kill -0 "$(cat "$run/operator.pid")" 2>/dev/null; then
    echo "the operator did not become ready on 127.0.0.1:$port; its log:" >&2
    tail -20 "$run/operator.log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "export KAIZEN_OPERATOR_URL=\"http://127.0.0.1:$port\"" >>"$run/env"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n demo -f examples/ >/dev/null
kubectl wait -n demo --for=jsonpath='{.status.observedGeneration}' incidents,actionitems,canaries --all --timeout=60s >/dev/null
kubectl get kaizen -n demo
cat <<MSG

Operator: http://127.0.0.1:$port (log: hack/.run/operator.log, metrics: http://127.0.0.1:$port/metrics)
Prometheus: $KAIZEN_PROMETHEUS_URL
Use the cluster:  source hack/.run/env && kubectl get kaizen -A
Tear down:        make down
MSG
