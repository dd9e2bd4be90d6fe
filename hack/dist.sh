#!/usr/bin/env bash
# Release archives of kubectl-kaizen with sha256 sums and the krew manifest, into dist/ (`make dist`).
#   KAIZEN_DIST_BINARY  use this binary instead of `cargo build --release` (tests pass a small file)
#   KAIZEN_DIST_DIR     output directory (default dist/)
#   KAIZEN_DIST_URL     where the archives will be downloaded from (the release's URL prefix)
#   KAIZEN_DIST_OS / KAIZEN_DIST_ARCH  the platform of the binary (default: this machine's)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
[ -n "$version" ] || { echo "dist: no version in Cargo.toml" >&2; exit 1; }
out="${KAIZEN_DIST_DIR:-$root/dist}"
homepage="${KAIZEN_DIST_HOMEPAGE:-https://github.com/kaizen-dev/kaizen}"
url="${KAIZEN_DIST_URL:-$homepage/releases/download/v$version}"
os="${KAIZEN_DIST_OS:-$(uname -s | tr '[:upper:]' '[:lower:]')}"
case "${KAIZEN_DIST_ARCH:-$(uname -m)}" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "dist: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

binary="${KAIZEN_DIST_BINARY:-}"
if [ -z "$binary" ]; then
  cargo build --locked --release --bin kubectl-kaizen
  binary="${CARGO_TARGET_DIR:-$root/target}/release/kubectl-kaizen"
fi
[ -x "$binary" ] || { echo "dist: $binary is not an executable" >&2; exit 1; }

mkdir -p "$out"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$binary" "$stage/kubectl-kaizen"
cp README.md "$stage/"
files=(kubectl-kaizen README.md)
if [ -f LICENSE ]; then cp LICENSE "$stage/"; files+=(LICENSE); fi
archive="kubectl-kaizen-v$version-$os-$arch.tar.gz"
# Reproducible: fixed order, owner and times, and no timestamp in the gzip header.
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - "${files[@]}" | gzip -n -9 >"$out/$archive"
(cd "$out" && sha256sum "$archive" >"$archive.sha256")

# Every archive in dist/ is a platform of the manifest, so builds for several platforms add up.
platforms=""
: >"$out/SHA256SUMS"
for a in "$out"/kubectl-kaizen-v"$version"-*.tar.gz; do
  name="$(basename "$a")"
  plat="${name#kubectl-kaizen-v"$version"-}"
  plat="${plat%.tar.gz}"
  sum="$(sha256sum "$a" | cut -d' ' -f1)"
  echo "$sum  $name" >>"$out/SHA256SUMS"
  extra=""
  [ -n "$(tar -tzf "$a" LICENSE 2>/dev/null || true)" ] && extra=$'\n    - from: LICENSE\n      to: .'
  platforms+="  - selector:
      matchLabels:
        os: ${plat%-*}
        arch: ${plat##*-}
    uri: $url/$name
    sha256: $sum
    bin: kubectl-kaizen
    files:
    - from: kubectl-kaizen
      to: .
    - from: README.md
      to: .$extra
"
done
awk -v version="$version" -v homepage="$homepage" -v platforms="$platforms" '
  /^#/ { next }
  { gsub("@VERSION@", version); gsub("@HOMEPAGE@", homepage) }
  /^@PLATFORMS@$/ { printf "%s", platforms; next }
  { print }
' hack/krew-kaizen.yaml.tmpl >"$out/kaizen.yaml"
echo "dist: $out/$archive, $out/SHA256SUMS, $out/kaizen.yaml"
