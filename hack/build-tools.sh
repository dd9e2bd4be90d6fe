#!/usr/bin/env bash
# Builds the pinned upstream control-plane binaries from source through the Go module proxy and caches
# them outside the work tree, keyed by version, so fresh clones (CI) reuse them.
# Prints the directory holding the binaries.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${KAIZEN_CACHE:-$HOME/.cache/kaizen}"
bin="$cache/bin/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
mkdir -p "$bin"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
# The checksum database is not always reachable here; go.sum files are committed and verified locally.
export GOSUMDB="${GOSUMDB:-off}"

log() { echo "[build-tools] $*" >&2; }

build() { # build <module dir> <output name> <package> [ldflags]
  local dir="$1" out="$2" pkg="$3" ldflags="${4:-}"
  if [[ -x "$bin/$out" ]]; then return 0; fi
  log "building $out from $pkg (first build of this version takes several minutes)"
  local start=$SECONDS
  (cd "$here/tools/$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$out.tmp" "$pkg")
  mv "$bin/$out.tmp" "$bin/$out"
  log "built $out in $((SECONDS - start))s"
}

k8s_ldflags() {
  local v="$KUBERNETES_VERSION" major minor
  major="$(echo "${v#v}" | cut -d. -f1)"
  minor="$(echo "${v#v}" | cut -d. -f2)"
  local f=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    f+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$f"
}

build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
build kwok kwokctl sigs.k8s.io/kwok/cmd/kwokctl "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
ld="$(k8s_ldflags)"
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build kubernetes "$cmd" "k8s.io/kubernetes/cmd/$cmd" "$ld"
done
# Helm is versioned apart from the control plane, so it is cached under its own version in the same
# directory (bumping it does not rebuild Kubernetes) and `helm` points at the pinned one.
helm_ldflags() {
  # As helm's Makefile does: the version, and the Kubernetes version `helm template` assumes without a
  # cluster (Capabilities.KubeVersion) from the client-go it is built with (v0.N -> 1.N).
  local f="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  f+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local cg minor
  cg="$(cd "$here/tools/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)"
  minor="$(echo "${cg#v}" | cut -d. -f2)"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    f+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
  done
  echo "$f"
}
[[ -x "$bin/helm-$HELM_VERSION" ]] || build helm "helm-$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$(helm_ldflags)"
if [[ "$(readlink "$bin/helm" 2>/dev/null)" != "helm-$HELM_VERSION" ]]; then
  ln -sfn "helm-$HELM_VERSION" "$bin/helm.tmp" && mv -T "$bin/helm.tmp" "$bin/helm"
fi
# cosign signs the release image (tests/release.rs verifies the signature from a registry); like helm, cached
# under its own version.
[[ -x "$bin/cosign-$COSIGN_VERSION" ]] || build cosign "cosign-$COSIGN_VERSION" github.com/sigstore/cosign/v3/cmd/cosign \
  "-X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION -X sigs.k8s.io/release-utils/version.gitTreeState=clean"
if [[ "$(readlink "$bin/cosign" 2>/dev/null)" != "cosign-$COSIGN_VERSION" ]]; then
  ln -sfn "cosign-$COSIGN_VERSION" "$bin/cosign.tmp" && mv -T "$bin/cosign.tmp" "$bin/cosign"
fi
# kstatus: cli-utils' status library as a command (hack/tools/kstatus), so tests/kstatus.rs checks what Flux
# and kpt read from Kaizen's objects with their own code. It is cached by the hash of its sources, which pin
# the library's version in go.mod.
kstatus_key="$(cat "$here/tools/kstatus/main.go" "$here/tools/kstatus/go.mod" "$here/tools/kstatus/go.sum" | sha256sum | cut -c1-12)"
[[ -x "$bin/kstatus-$kstatus_key" ]] || build kstatus "kstatus-$kstatus_key" .
if [[ "$(readlink "$bin/kstatus" 2>/dev/null)" != "kstatus-$kstatus_key" ]]; then
  ln -sfn "kstatus-$kstatus_key" "$bin/kstatus.tmp" && mv -T "$bin/kstatus.tmp" "$bin/kstatus"
fi
echo "$bin"
