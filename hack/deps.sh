#!/usr/bin/env bash
# Installs the Debian packages the project's commands run, when they are missing, so `make demo`,
# `make test`, `make image` and `make release` work on a fresh machine by themselves (.ci/run installs
# nothing of its own: CI breaks whenever the README's commands would).
#   hack/deps.sh test    everything `make test` runs: Prometheus, Alertmanager, lua5.1 (the Argo CD health
#                        script), and the image tools below (the image and release tests)
#   hack/deps.sh image   buildah, skopeo, umoci, runc (build, copy, unpack and run OCI images without a
#                        Docker engine), the CNCF registry (docker-registry) and CA certificates
#   hack/deps.sh demo    Prometheus (the control plane's metrics source)
set -euo pipefail

declare -A command_of=(
  [prometheus]=prometheus [prometheus-alertmanager]=prometheus-alertmanager [lua5.1]=lua5.1
  [buildah]=buildah [skopeo]=skopeo [umoci]=umoci [runc]=runc [docker-registry]=docker-registry
  [ca-certificates]=/etc/ssl/certs/ca-certificates.crt
)
image=(buildah skopeo umoci runc docker-registry ca-certificates)
case "${1:-test}" in
  test) wanted=(prometheus prometheus-alertmanager lua5.1 "${image[@]}") ;;
  image) wanted=("${image[@]}") ;;
  demo) wanted=(prometheus) ;;
  *) echo "deps: unknown set '$1' (test, image, demo)" >&2; exit 2 ;;
esac

missing=()
for pkg in "${wanted[@]}"; do
  probe="${command_of[$pkg]}"
  if [[ "$probe" == /* ]]; then [[ -e "$probe" ]] || missing+=("$pkg"); continue; fi
  command -v "$probe" >/dev/null 2>&1 || missing+=("$pkg")
done
((${#missing[@]} == 0)) && exit 0
if [[ $EUID -ne 0 ]] && ! command -v sudo >/dev/null; then
  echo "deps: missing Debian packages ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
  exit 1
fi
sudo=""
[[ $EUID -ne 0 ]] && sudo=sudo
echo "[deps] installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
