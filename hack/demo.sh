#!/usr/bin/env bash
# Brings up the local control plane, installs the CRDs, runs the operator and applies the examples.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
hack/cluster.sh up >/dev/null
# shellcheck disable=SC1091
source hack/.run/env
cargo build --locked --bin kaizen
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=Established crd --all --timeout=60s >/dev/null
if [[ -f hack/.run/operator.pid ]]; then kill "$(cat hack/.run/operator.pid)" 2>/dev/null || true; fi
nohup "${CARGO_TARGET_DIR:-target}/debug/kaizen" run --listen 127.0.0.1:18080 --namespace demo \
  >hack/.run/operator.log 2>&1 &
echo $! >hack/.run/operator.pid
deadline=$((SECONDS + 120))
until curl -fsS 127.0.0.1:18080/readyz >/dev/null 2>&1; do
  if ((SECONDS >= deadline)) || ! kill -0 "$(cat hack/.run/operator.pid)" 2>/dev/null; then
    echo "the operator did not become ready; its log:" >&2
    tail -20 hack/.run/operator.log >&2
    exit 1
  fi
  sleep 0.5
done
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n demo -f examples/ >/dev/null
kubectl wait -n demo --for=jsonpath='{.status.observedGeneration}' incidents,actionitems,canaries --all --timeout=60s >/dev/null
kubectl get kaizen -n demo
cat <<MSG

Operator log: hack/.run/operator.log   metrics: http://127.0.0.1:18080/metrics
Use the cluster:  source hack/.run/env && kubectl get kaizen -A
Tear down:        make down
MSG
