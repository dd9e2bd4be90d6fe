#!/usr/bin/env bash
# The local control plane: a real kube-apiserver, etcd, controller-manager and scheduler built from pinned
# upstream sources (hack/build-tools.sh), fake kwok nodes whose pods turn Ready without a kubelet, the
# Gateway API CRDs, and a Prometheus from Debian's package on loopback (Debian's Alertmanager is installed
# for the alerting tests, which start their own).
#
#   hack/cluster.sh up     start everything; prints the kubeconfig path
#   hack/cluster.sh down   stop everything and delete its state
#   hack/cluster.sh env    print shell exports (KUBECONFIG, KAIZEN_PROMETHEUS_URL, PATH with the binaries, and
#                          KAIZEN_CLUSTER_NAME / KWOK_WORKDIR for `kwokctl stop|start cluster`)
#   hack/cluster.sh free-port   print a loopback port nothing listens on
#
# Every cluster gets its own ports, so several can run side by side (demo, tests, benchmarks; each with its
# own KAIZEN_RUN_DIR and KAIZEN_CLUSTER_NAME): kwokctl picks free ports for etcd, the apiserver, the
# controller-manager, the scheduler and kwok, and Prometheus gets a free one unless KAIZEN_PROMETHEUS_PORT
# names one. The run dir's `env` file says which (KUBECONFIG, KAIZEN_PROMETHEUS_URL).
#
# KAIZEN_AUDIT=1 also writes the apiserver's audit log (every request's verb, resource and user agent, at
# Metadata level; hack/audit-policy.yaml) to the file KAIZEN_AUDIT_LOG names in `env`: how the peer
# benchmark counts each controller's own requests without trusting its self-report.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
run="${KAIZEN_RUN_DIR:-$here/.run}"
name="${KAIZEN_CLUSTER_NAME:-kaizen}"
prom_port="${KAIZEN_PROMETHEUS_PORT:-}"
export KWOK_WORKDIR="$run/kwok"
export KWOK_KUBE_VERSION="$KUBERNETES_VERSION"

log() { echo "[cluster] $*" >&2; }

wait_for() { # wait_for <seconds> <description> <command...>
  local deadline=$((SECONDS + $1)) what="$2"
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

# A loopback port nothing listens on right now (nothing reserves it: callers check that their server got it).
free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 10000))
    if ! (: </dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  log "found no free loopback port"
  return 1
}

ensure_prometheus() {
  if command -v prometheus >/dev/null 2>&1; then return 0; fi
  log "installing Debian's prometheus package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

# Alertmanager is not started here: the alerting tests start their own, with a config pointing at the
# operator they run (tests/common/alerting.rs). Installed with the control plane so they find it.
ensure_alertmanager() {
  if command -v prometheus-alertmanager >/dev/null 2>&1; then return 0; fi
  log "installing Debian's prometheus-alertmanager package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
}

# Gateway API CRDs (standard channel), for Canaries with gatewayAPI routing: from the module zip on the Go
# module proxy, pinned in versions.env. No gateway controller runs; tests check the HTTPRoute's weights.
gateway_api_crds() {
  local bin="$1" dir
  dir="$(cd "$run" && GOFLAGS=-mod=mod GOSUMDB=off GOTOOLCHAIN=local \
    go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir/config/crd/standard" ]] || { log "no Gateway API CRDs in $dir"; return 1; }
  "$bin/kubectl" apply --server-side -f "$dir/config/crd/standard/" >/dev/null
  wait_for 60 "the HTTPRoute CRD to be Established" \
    "$bin/kubectl" wait --for=condition=Established crd/httproutes.gateway.networking.k8s.io --timeout=1s
}

prometheus_up() {
  ensure_prometheus
  local dir="$run/prometheus"
  mkdir -p "$dir/targets" "$dir/data"
  # Tests register scrape targets by writing file_sd JSON files into targets/; nothing else is scraped.
  cat >"$dir/prometheus.yml" <<CFG
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: kaizen-test
    scrape_interval: 1s
    file_sd_configs:
      - files: ['$dir/targets/*.json']
        refresh_interval: 1s
CFG
  # A free port can be taken between choosing and binding it: then Prometheus exits, and another is tried.
  local attempt pid
  for attempt in 1 2 3; do
    local port="${KAIZEN_PROMETHEUS_PORT:-$(free_port)}"
    nohup prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
      --web.listen-address="127.0.0.1:$port" --web.enable-lifecycle \
      --storage.tsdb.retention.time=2h >"$dir/prometheus.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"
    local deadline=$((SECONDS + 60))
    # Ready, and ours: the process we started still runs (else whatever answers is someone else's).
    until kill -0 "$pid" 2>/dev/null && curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; do
      if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then break; fi
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null && curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then
      prom_port="$port"
      return 0
    fi
    kill "$pid" 2>/dev/null || true
    log "Prometheus did not start on port $port (attempt $attempt); its log ends:"
    tail -3 "$dir/prometheus.log" >&2
    [[ -z "${KAIZEN_PROMETHEUS_PORT:-}" ]] || return 1
  done
  return 1
}

prometheus_down() {
  local pidfile="$run/prometheus/pid"
  if [[ -f "$pidfile" ]]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

write_env() {
  local bin="$1"
  cat >"$run/env" <<ENV
export KUBECONFIG="$run/kubeconfig"
export KAIZEN_PROMETHEUS_URL="http://127.0.0.1:$prom_port"
export KAIZEN_PROMETHEUS_TARGETS="$run/prometheus/targets"
export KAIZEN_TOOLS_BIN="$bin"
export KAIZEN_CLUSTER_NAME="$name"
export KWOK_WORKDIR="$KWOK_WORKDIR"
export PATH="$bin:\$PATH"
ENV
  if [[ "${KAIZEN_AUDIT:-}" == 1 ]]; then
    echo "export KAIZEN_AUDIT_LOG=\"$KWOK_WORKDIR/clusters/$name/logs/audit.log\"" >>"$run/env"
  fi
}

up() {
  local bin start=$SECONDS
  bin="$("$here/build-tools.sh")"
  mkdir -p "$run"
  if "$bin/kwokctl" get clusters 2>/dev/null | grep -qx "$name"; then
    log "cluster $name already exists; recreating it"
    down
    mkdir -p "$run"
  fi
  local audit=()
  # Rotation at 100 GB, not the default 100 MB: a benchmark reads the log by byte offsets.
  [[ "${KAIZEN_AUDIT:-}" == 1 ]] && audit=(--kube-audit-policy "$here/audit-policy.yaml"
    --extra-args kube-apiserver=audit-log-maxsize=100000)
  # Services get a /16 (the apiserver's default /24 holds 254: Flagger's three Services per Canary
  # ran out at 85 Canaries).
  log "starting kube-apiserver $KUBERNETES_VERSION, etcd $ETCD_VERSION and kwok $KWOK_VERSION"
  "$bin/kwokctl" create cluster --name "$name" --runtime binary \
    --kubeconfig "$run/kubeconfig" \
    --etcd-binary "$bin/etcd" \
    --kube-apiserver-binary "$bin/kube-apiserver" \
    --kube-controller-manager-binary "$bin/kube-controller-manager" \
    --kube-scheduler-binary "$bin/kube-scheduler" \
    --kwok-controller-binary "$bin/kwok" \
    --disable-qps-limits \
    --extra-args kube-apiserver=service-cluster-ip-range=10.0.0.0/16 \
    "${audit[@]}" \
    --wait 120s >"$run/kwokctl.log" 2>&1 || { cat "$run/kwokctl.log" >&2; return 1; }
  export KUBECONFIG="$run/kubeconfig"
  wait_for 60 "the apiserver to be ready" "$bin/kubectl" get --raw /readyz
  "$bin/kubectl" apply -f "$here/kwok-nodes.yaml" >/dev/null
  wait_for 60 "kwok nodes to be Ready" "$bin/kubectl" wait --for=condition=Ready node --all --timeout=1s
  # The namespace "default" must have its ServiceAccount before pods can be created there.
  wait_for 60 "the default ServiceAccount" "$bin/kubectl" get serviceaccount default -n default
  log "installing Gateway API $GATEWAY_API_VERSION CRDs"
  gateway_api_crds "$bin"
  prometheus_up
  ensure_alertmanager
  write_env "$bin"
  log "up in $((SECONDS - start))s; Prometheus at http://127.0.0.1:$prom_port"
  echo "$run/kubeconfig"
}

down() {
  prometheus_down
  local bin
  bin="$("$here/build-tools.sh")"
  "$bin/kwokctl" delete cluster --name "$name" >/dev/null 2>&1 || true
  rm -rf "$run"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) cat "$run/env" ;;
  free-port) free_port ;;
  *)
    echo "usage: $0 up|down|env|free-port" >&2
    exit 2
    ;;
esac
