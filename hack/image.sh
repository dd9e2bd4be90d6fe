#!/usr/bin/env bash
# The operator's OCI image, built without a Docker engine (`make image`): the release binary of `kaizen`
# and what it needs at run time staged as a root filesystem, built FROM scratch by Debian's buildah from
# the repository's Containerfile, and written as an OCI archive, dist/kaizen-<version>.oci.tar (load it
# with `skopeo copy oci-archive:…`, `podman load`, `ctr images import` or `kind load image-archive`).
# Prints the image's digest (the manifest's) on the last line and writes it to dist/kaizen-<version>.digest.
#
# Reproducible: the binary is built with cargo's registry paths remapped, every file and the
# image's creation time are set to the commit's time (SOURCE_DATE_EPOCH), and the archive is written in a
# fixed order, so two builds of one commit give the same digest.
#
#   --stage-only            stage dist/image (the Containerfile's context) and stop
#   KAIZEN_IMAGE_BINARY     use this `kaizen` binary instead of building the release one
#   KAIZEN_IMAGE_REPOSITORY the image's name (default ghcr.io/kaizen-dev/kaizen, the chart's default)
#   KAIZEN_DIST_DIR         output directory (default dist/)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { echo "[image] $*" >&2; }

stage_only=false
[[ "${1:-}" == "--stage-only" ]] && stage_only=true
hack/deps.sh image

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
repository="${KAIZEN_IMAGE_REPOSITORY:-ghcr.io/kaizen-dev/kaizen}"
out="${KAIZEN_DIST_DIR:-$root/dist}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
cache="${KAIZEN_CACHE:-$HOME/.cache/kaizen}"
target_triple="$(rustc -vV | sed -n 's/^host: //p')"

binary="${KAIZEN_IMAGE_BINARY:-}"
if [[ -z "$binary" ]]; then
  # An explicit --target keeps these flags off build scripts and proc macros, and apart from the plain
  # release build (`make bench`), so each is cached on its own.
  flags_var="CARGO_TARGET_$(echo "$target_triple" | tr '[:lower:]-' '[:upper:]_')_RUSTFLAGS"
  # Cargo names the project's own sources by relative paths; the registry's sources are named by
  # absolute ones, which are remapped so the binary does not depend on where CARGO_HOME is. The
  # checkout's path is not in the flags, so every clone of the repository shares one cached build.
  export "$flags_var=--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
  log "building the release binary (the first build takes about 15 minutes on 2 cores)"
  cargo build --locked --release --target "$target_triple" --bin kaizen >&2
  binary="${CARGO_TARGET_DIR:-$root/target}/$target_triple/release/kaizen"
fi
[[ -x "$binary" ]] || { echo "image: $binary is not an executable" >&2; exit 1; }

# The root filesystem: /kaizen (symbols stripped), the shared libraries the dynamic linker loads for it
# (as ldd lists them: glibc's, including its DNS resolver, libgcc_s), CA certificates for https
# Prometheus addresses and sinks, and passwd/group entries for uid 65532, so nothing runs as root.
context="$out/image"
rootfs="$context/rootfs"
rm -rf "$context"
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
strip --strip-all -o "$rootfs/kaizen" "$binary"
chmod 0755 "$rootfs/kaizen"
while read -r lib; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
  chmod 0755 "$rootfs$lib"
done < <(ldd "$rootfs/kaizen" | grep -o '/[^ ]*' | sort -u)
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/ssl/certs/ca-certificates.crt"
find "$rootfs" -exec touch -h -d "@$epoch" {} +
if $stage_only; then
  log "staged $context (build it with: docker build -f Containerfile --build-arg VERSION=$version --build-arg REVISION=$revision $context)"
  exit 0
fi

# buildah keeps its storage in the cache (vfs: no overlay mounts needed) and builds with chroot isolation:
# a FROM scratch image of COPY steps runs no container.
store="$cache/containers"
bah() { buildah --storage-driver vfs --root "$store/storage" --runroot "$store/run" "$@"; }
tag="$repository:$version"
bah build --quiet --isolation chroot --timestamp "$epoch" --layers=false \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -f "$root/Containerfile" -t "$tag" "$context" >/dev/null
layout="$context/layout"
bah push --quiet "$tag" "oci:$layout:$version" >/dev/null
bah rmi --force "$tag" >/dev/null 2>&1 || true
# The archive: the OCI layout in a fixed order with fixed owners and times (what `oci-archive:` reads).
find "$layout" -exec touch -h -d "@$epoch" {} +
archive="$out/kaizen-$version.oci.tar"
tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf "$archive.tmp" .
mv "$archive.tmp" "$archive"
digest="$(grep -o '"digest":"sha256:[0-9a-f]*"' "$layout/index.json" | head -1 | cut -d'"' -f4)"
echo "$digest" >"$out/kaizen-$version.digest"
size="$(du -b "$archive" | cut -f1)"
log "$archive ($tag, $((size / 1024)) KiB); load it with: skopeo copy oci-archive:$archive docker://<registry>/kaizen:$version"
echo "$digest"
