#!/usr/bin/env bash
# Brings up the local control plane, installs the CRDs, runs the operator and the demo metrics source,
# applies examples/ (namespace examples) and the live loop (hack/demo/loop.yaml, namespace demo), ships
# one good and one bad release through Canaries, leaves a third release waiting at an untimed pause,
# and prints what happened and the commands that act on the waiting rollout.
# The demo has its own run dir (hack/.run, which `make down` stops) and cluster name, and every port is
# picked free, so `make test` and `make bench` can run while the demo is up.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
export KAIZEN_RUN_DIR="$here/.run" KAIZEN_CLUSTER_NAME=kaizen
run="$KAIZEN_RUN_DIR"
hack/deps.sh demo
hack/cluster.sh up >/dev/null
# shellcheck disable=SC1091
source "$run/env"
cargo build --locked --bin kaizen --bin kubectl-kaizen --example demo_metrics
bin="${CARGO_TARGET_DIR:-target}/debug"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=Established crd --all --timeout=60s >/dev/null
for pidfile in operator.pid demo-metrics.pid; do
  if [[ -f "$run/$pidfile" ]]; then kill "$(cat "$run/$pidfile")" 2>/dev/null || true; fi
done
cat >"$run/policy.yaml" <<POLICY
prometheus: {defaultAddress: $KAIZEN_PROMETHEUS_URL}
reminderInterval: 1h
POLICY
port="$(hack/cluster.sh free-port)"
nohup "$bin/kaizen" run --config "$run/policy.yaml" --listen "127.0.0.1:$port" --namespace demo \
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

# The demo's metrics source, scraped by the local Prometheus: images tagged -bad err.
mport="$(hack/cluster.sh free-port)"
nohup "$bin/examples/demo_metrics" "127.0.0.1:$mport" demo >"$run/demo-metrics.log" 2>&1 &
echo $! >"$run/demo-metrics.pid"
echo "[{\"targets\": [\"127.0.0.1:$mport\"], \"labels\": {\"exporter\": \"demo\"}}]" >"$KAIZEN_PROMETHEUS_TARGETS/demo.tmp"
mv "$KAIZEN_PROMETHEUS_TARGETS/demo.tmp" "$KAIZEN_PROMETHEUS_TARGETS/demo.json"

# A second `make demo` starts the loop over (the running operator releases the Canaries' finalizers).
kubectl delete namespace demo --ignore-not-found --wait --timeout=120s >/dev/null
for ns in demo examples; do
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done
# The static examples, in their own namespace; the live loop in `demo`.
echo "==> checking the manifests offline first: kubectl kaizen lint -f examples/ -f hack/demo/loop.yaml"
loop="$(sed "s/DUE_PAST/$(date -u -d '-2 hours' +%FT%TZ)/" hack/demo/loop.yaml)"
"$bin/kubectl-kaizen" lint -f examples/ -f - <<<"$loop"
kubectl apply -n examples -f examples/ >/dev/null
kubectl apply -n demo -f - <<<"$loop" >/dev/null
echo "==> an Incident with two follow-ups (one overdue) and three Canaries; waiting for the primaries"
kubectl wait -n demo --for=jsonpath='{.status.phase}'=Idle canary/checkout canary/search canary/cart \
  --timeout=120s >/dev/null
deadline=$((SECONDS + 60))
until curl -fsS "$KAIZEN_PROMETHEUS_URL/api/v1/query" --data-urlencode 'query=demo_http_error_ratio{replicaset=~"search-.*"}' \
  | grep -q '"value"'; do
  if ((SECONDS >= deadline)); then echo "Prometheus never scraped the demo metrics source" >&2; exit 1; fi
  sleep 0.5
done
echo "==> shipping checkout v2 (good), search v2-bad (errs on 25% of requests) and cart v2 (waits for you)"
kubectl set image -n demo deployment/checkout app=example.com/checkout:v2 >/dev/null
kubectl set image -n demo deployment/search app=example.com/search:v2-bad >/dev/null
kubectl set image -n demo deployment/cart app=example.com/cart:v2 >/dev/null
kubectl wait -n demo --for=jsonpath='{.status.phase}'=Succeeded canary/checkout --timeout=120s >/dev/null
echo "    checkout promoted"
kubectl wait -n demo --for=jsonpath='{.status.phase}'=RolledBack canary/search --timeout=120s >/dev/null
echo "    search rolled back"
kubectl wait -n demo --for=jsonpath='{.status.phase}'=Verified actionitem/fix-checkout-retries --timeout=60s >/dev/null
echo "    fix-checkout-retries verified by the checkout canary"
# Step 1 of cart is the untimed pause: its first Paused phase.
kubectl wait -n demo --for=jsonpath='{.status.phase}'=Paused canary/cart --timeout=120s >/dev/null
echo "    cart v2 passed step 0 (25% of traffic, analysed) and waits at step 1, an untimed pause"
echo
if [[ -x "$bin/kubectl-kaizen" ]]; then
  export PATH="$bin:$PATH"
  for obj in incident/checkout-errors canary/checkout canary/search canary/cart actionitem/rotate-db-credentials; do
    echo "\$ kubectl kaizen status -n demo $obj"
    kubectl kaizen status -n demo "$obj"
    echo
  done
  view="kubectl kaizen get -A"
  controls="$(
    cat <<'CONTROLS'
  Watch it:        kubectl kaizen get canary cart -n demo -w       (or: kubectl kaizen status -n demo canary/cart -w)
  Next step:       kubectl kaizen promote -n demo cart             (ends the pause; --full skips every remaining step)
  Skip a pause:    kubectl kaizen skip -n demo cart                (e.g. the 1m pause at step 3)
  Hold, go on:     kubectl kaizen pause -n demo cart               kubectl kaizen resume -n demo cart
  Roll back:       kubectl kaizen abort -n demo cart               (then: kubectl kaizen retry -n demo cart)
  Put v1 back:     kubectl kaizen undo -n demo cart                (the target back to the stable template)
  Release again:   kubectl set image -n demo deployment/cart app=example.com/cart:v3
  Check manifests: kubectl kaizen lint -f examples/                (offline, as the apiserver would)
CONTROLS
  )"
else
  kubectl get kaizen -n demo
  view="kubectl get kaizen -A"
  controls="  Promote:  kubectl annotate -n demo canary/cart kaizen.dev/resume=\$(date +%s) --overwrite
  Abort:    kubectl annotate -n demo canary/cart kaizen.dev/abort=\$(date +%s) --overwrite"
fi
cat <<MSG

Operator: http://127.0.0.1:$port (log: hack/.run/operator.log, metrics: http://127.0.0.1:$port/metrics)
Prometheus: $KAIZEN_PROMETHEUS_URL
Use the cluster:  source hack/.run/env && export PATH="$bin:\$PATH" && $view
A rollout waits for you: cart v2 is at step 1/5 of its Canary, an untimed pause.
$controls
Tear down:        make down
MSG
