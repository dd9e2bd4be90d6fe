#!/usr/bin/env bash
# A release a platform team pulls (`make release`), and its publication to an OCI registry.
#
#   hack/release.sh            into dist/: the operator image archive (hack/image.sh), the chart packaged by
#                              helm with that image's digest pinned (kaizen-<version>.tgz), the plugin
#                              archives and krew manifest (hack/dist.sh), a CycloneDX SBOM of the operator
#                              (kaizen-<version>.cdx.json, by cargo-cyclonedx) and SHA256SUMS of them all
#   hack/release.sh chart      only the chart package, pinned to dist/kaizen-<version>.digest
#   hack/release.sh publish REGISTRY
#                              pushes the image (skopeo) to REGISTRY/kaizen:<version> and the chart
#                              (`helm push`) to oci://REGISTRY/charts, then signs the image by digest
#                              with cosign and the key in KAIZEN_COSIGN_KEY (its password in
#                              COSIGN_PASSWORD); no transparency log upload unless KAIZEN_COSIGN_TLOG=1.
#                              KAIZEN_REGISTRY_PLAIN_HTTP=1 talks plain HTTP (a loopback test registry).
#
#   KAIZEN_DIST_DIR      output directory (default dist/)
#   KAIZEN_DIST_BINARY   the plugin binary to package (hack/dist.sh; default: its release build)
# Tools: helm and cosign are the pinned builds of hack/build-tools.sh; cargo-cyclonedx is installed from
# crates.io at the version below into the cache.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { echo "[release] $*" >&2; }
CYCLONEDX_VERSION=0.5.9

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
chart_version="$(sed -n 's/^version: *//p' charts/kaizen/Chart.yaml)"
[[ "$version" == "$chart_version" ]] || { echo "release: Cargo.toml says $version, Chart.yaml $chart_version" >&2; exit 1; }
out="${KAIZEN_DIST_DIR:-$root/dist}"
mkdir -p "$out"
export KAIZEN_DIST_DIR="$out"
cache="${KAIZEN_CACHE:-$HOME/.cache/kaizen}"
tools="$(hack/build-tools.sh)"

# The chart as published: values.yaml pins the image built with it by digest.
package_chart() {
  local digest stage
  digest="$(cat "$out/kaizen-$version.digest" 2>/dev/null)" || { echo "release: no image digest; run hack/image.sh first" >&2; exit 1; }
  stage="$(mktemp -d)"
  cp -r charts/kaizen "$stage/kaizen"
  sed -i "s/^  digest: \"\"$/  digest: \"$digest\"/" "$stage/kaizen/values.yaml"
  grep -q "digest: \"$digest\"" "$stage/kaizen/values.yaml" || { echo "release: could not pin the digest in values.yaml" >&2; exit 1; }
  "$tools/helm" package "$stage/kaizen" -d "$out" >/dev/null
  rm -rf "$stage"
  log "chart $out/kaizen-$version.tgz (image pinned to $digest)"
}

sbom() {
  local bin="$cache/tools/cargo-cyclonedx-$CYCLONEDX_VERSION"
  if [[ ! -x "$bin/bin/cargo-cyclonedx" ]]; then
    log "installing cargo-cyclonedx $CYCLONEDX_VERSION from crates.io (once; cached in $bin)"
    cargo install --quiet --locked --version "$CYCLONEDX_VERSION" --root "$bin" cargo-cyclonedx
  fi
  # The operator's dependency tree as shipped (no dev-dependencies), for the target the image runs.
  PATH="$bin/bin:$PATH" cargo cyclonedx --format json --spec-version 1.5 --target "$(rustc -vV | sed -n 's/^host: //p')" \
    --override-filename "kaizen-$version.cdx" >/dev/null
  mv "kaizen-$version.cdx.json" "$out/kaizen-$version.cdx.json"
  log "SBOM $out/kaizen-$version.cdx.json"
}

publish() {
  local registry="$1" digest plain=() tls=() cosign_flags=()
  digest="$(cat "$out/kaizen-$version.digest")"
  [[ -n "${KAIZEN_COSIGN_KEY:-}" ]] || { echo "release: KAIZEN_COSIGN_KEY names no signing key" >&2; exit 1; }
  if [[ "${KAIZEN_REGISTRY_PLAIN_HTTP:-}" == 1 ]]; then
    plain=(--plain-http); tls=(--dest-tls-verify=false); cosign_flags=(--allow-insecure-registry --allow-http-registry)
  fi
  skopeo copy --quiet "${tls[@]}" "oci-archive:$out/kaizen-$version.oci.tar" "docker://$registry/kaizen:$version"
  "$tools/helm" push "$out/kaizen-$version.tgz" "oci://$registry/charts" "${plain[@]}" >&2
  local tlog=(--use-signing-config=false --tlog-upload=false)
  [[ "${KAIZEN_COSIGN_TLOG:-}" == 1 ]] && tlog=()
  "$tools/cosign" sign --yes --key "$KAIZEN_COSIGN_KEY" "${tlog[@]}" "${cosign_flags[@]}" "$registry/kaizen@$digest" >&2
  log "published $registry/kaizen:$version@$digest and oci://$registry/charts/kaizen:$version; signed"
}

case "${1:-all}" in
  chart) package_chart ;;
  publish) publish "${2:?release: publish needs a registry host:port}" ;;
  all)
    # KAIZEN_RELEASE_REUSE_IMAGE=1: the archive and digest already in the output directory are this
    # commit's (tests/release.rs reuses what `make image` built).
    if [[ "${KAIZEN_RELEASE_REUSE_IMAGE:-}" != 1 || ! -f "$out/kaizen-$version.digest" ]]; then
      hack/image.sh >/dev/null
    fi
    package_chart
    hack/dist.sh >&2
    sbom
    (cd "$out" && sha256sum "kaizen-$version.oci.tar" "kaizen-$version.tgz" "kaizen-$version.cdx.json" \
      kubectl-kaizen-v"$version"-*.tar.gz >SHA256SUMS)
    log "dist: $(cd "$out" && ls | tr '\n' ' ')"
    ;;
  *) echo "release: unknown command $1 (chart, publish REGISTRY)" >&2; exit 2 ;;
esac
