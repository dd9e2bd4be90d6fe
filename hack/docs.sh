#!/usr/bin/env bash
# Builds the mdBook in docs/ and checks its links; also checks the relative links of the top-level
# Markdown files (README.md, SECURITY.md, CHANGELOG.md).
#
# Installs what it needs itself (pinned, with `cargo install --locked`) into
#   ${KAIZEN_CACHE:-$HOME/.cache/kaizen}/tools/mdbook-<version>/bin
# so only the first run compiles anything. Output: ${KAIZEN_DOCS_OUT:-dist/book}
# (html/ is the book, linkcheck/ is the link checker's empty output).
#
# Fails with a message naming the file and the link when an internal link is broken: a relative link to
# a file that does not exist, inside the book or leaving docs/ (e.g. ../../examples/canary.yaml), or a
# #fragment naming no heading of the linked Markdown file (the check below); a missing page, a page
# left out of SUMMARY.md or a malformed link (mdbook-linkcheck, during the build).
# Web links are not followed (no network needed once the tools are installed). In the built HTML, links
# to repository files point at ${KAIZEN_DOCS_REPO_URL:-https://github.com/kaizen-dev/kaizen/blob/main}.
#
#   hack/docs.sh               check, install the tools if needed, build
#   hack/docs.sh --links-only  only the relative-link check (no tools, no build; a second or so)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

# mdbook-linkcheck 0.7.7 (the newest) accepts mdbook ^0.4.0 only, so mdbook stays on 0.4.x.
MDBOOK_VERSION=0.4.52
MDBOOK_LINKCHECK_VERSION=0.7.7

cache="${KAIZEN_CACHE:-$HOME/.cache/kaizen}"
tools="$cache/tools/mdbook-$MDBOOK_VERSION"
out="${KAIZEN_DOCS_OUT:-$root/dist/book}"
case "$out" in /*) ;; *) out="$root/$out" ;; esac

log() { echo "[docs] $*" >&2; }
die() { echo "[docs] error: $*" >&2; exit 1; }

install_tool() { # install_tool <crate> <version> <binary> [cargo install args...]
  local crate="$1" version="$2" binary="$3"; shift 3
  local stamp="$tools/.$crate-$version"
  if [[ -x "$tools/bin/$binary" && -f "$stamp" ]]; then return 0; fi
  command -v cargo >/dev/null || die "cargo is needed to install $crate $version (https://rustup.rs)"
  log "installing $crate $version into $tools (first run only; a few minutes)"
  local start=$SECONDS
  CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" \
    cargo install --quiet --locked --version "$version" --root "$tools" "$@" "$crate" \
    || die "cargo install $crate $version failed"
  touch "$stamp"
  log "installed $crate $version in $((SECONDS - start))s"
}

# 1. Relative links in the book's pages and the top-level Markdown files must name an existing file
#    inside the repository (the book links to examples/, charts/, hack/ and the top-level files).
#    Links are Markdown inline links `[text](target)`; targets with a scheme (https:, mailto:) are
#    skipped. A #fragment on a link to a Markdown file (or a bare #fragment) must name one of its
#    headings.

# The anchors of a Markdown file's headings, as GitHub and mdBook make them: lower case, punctuation
# dropped, spaces turned into hyphens.
anchors() {
  awk '/^[[:space:]]*(```|~~~)/ { fence = !fence; next } !fence && /^#+ / { print }' "$1" \
    | sed -E 's/^#+ +//; s/ +#*$//' | tr '[:upper:]' '[:lower:]' \
    | sed -E 's/[^a-z0-9 _-]//g; s/ /-/g'
}

check_relative_links() {
  local broken=0 file target path resolved fragment
  local files=("$root/README.md" "$root/SECURITY.md" "$root/CHANGELOG.md")
  while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$root/docs/src" -name '*.md' -print0 | sort -z)
  for file in "${files[@]}"; do
    [[ -f "$file" ]] || continue
    # Code blocks are not links: drop fenced blocks and inline code spans before extracting.
    while IFS= read -r target; do
      case "$target" in
        ''|*://*|mailto:*) continue ;;
      esac
      fragment=""; [[ "$target" == *'#'* ]] && fragment="${target#*#}"
      path="${target%%#*}"; path="${path%%\?*}"
      [[ -n "$path" ]] || path="$(basename "$file")"
      if [[ "$path" == /* ]]; then
        echo "[docs] $(realpath --relative-to="$root" "$file"): absolute link '$target' (make it relative)" >&2
        broken=1; continue
      fi
      resolved="$(realpath -m "$(dirname "$file")/$path")"
      if [[ "$resolved" != "$root" && "$resolved" != "$root"/* ]]; then
        echo "[docs] $(realpath --relative-to="$root" "$file"): link '$target' leaves the repository" >&2
        broken=1
      elif [[ ! -e "$resolved" ]]; then
        echo "[docs] $(realpath --relative-to="$root" "$file"): broken link '$target' ($(realpath -m --relative-to="$root" "$resolved") does not exist)" >&2
        broken=1
      elif [[ -n "$fragment" && "$resolved" == *.md ]] && ! anchors "$resolved" | grep -qxF -- "$fragment"; then
        echo "[docs] $(realpath --relative-to="$root" "$file"): link '$target': no heading '#$fragment' in $(realpath --relative-to="$root" "$resolved")" >&2
        broken=1
      fi
    done < <(awk '/^[[:space:]]*(```|~~~)/ { fence = !fence; next } !fence { gsub(/`[^`]*`/, ""); print }' "$file" \
               | grep -oE '\]\([^) ]+' | sed -e 's/^](//' -e 's/^<//' -e 's/>$//')
  done
  return "$broken"
}

log "checking relative links (README.md, SECURITY.md, CHANGELOG.md, docs/src)"
check_relative_links || die "broken relative links (listed above)"
[[ "${1:-}" == "--links-only" ]] && { log "relative links OK"; exit 0; }

mkdir -p "$tools"
# Without the `serve` and `watch` features mdbook builds in about half the time; `search` is kept.
install_tool mdbook "$MDBOOK_VERSION" mdbook --no-default-features --features search
install_tool mdbook-linkcheck "$MDBOOK_LINKCHECK_VERSION" mdbook-linkcheck
export PATH="$tools/bin:$PATH"

# 2. Build the book; the linkcheck backend (docs/book.toml) fails the build on a link to a missing file
#    or a page left out of SUMMARY.md, and on a malformed link ("Potential incomplete link"). It does not
#    check #headings; step 1 does.
log "building the book into ${out#"$root"/} with mdbook $MDBOOK_VERSION and mdbook-linkcheck $MDBOOK_LINKCHECK_VERSION"
case "$out" in "$root" | "$root/docs"* | / | "$HOME") die "KAIZEN_DOCS_OUT=$out would be wiped; name an output directory" ;; esac
rm -rf "$out"
mdbook build "$root/docs" --dest-dir "$out" || die "mdbook build or its link check failed (see above)"
[[ -f "$out/html/index.html" ]] || die "no $out/html/index.html after the build"

# Pages link to repository files relative to their source (`../../examples/canary.yaml` from docs/src/),
# which works when the sources are browsed. In the built HTML those files are not beside the book, so
# such links point at the repository instead (mdBook turned `../../README.md` into `README.html`; it is
# put back). The check above proved every target exists in this checkout.
repo_url="${KAIZEN_DOCS_REPO_URL:-https://github.com/kaizen-dev/kaizen/blob/main}"
find "$out/html" -name '*.html' -print0 | xargs -0 sed -i -E \
  -e 's#href="\.\./\.\./([^"#]*)\.html#href="../../\1.md#g' \
  -e "s#href=\"\\.\\./\\.\\./#href=\"${repo_url//#/\\#}/#g"
log "book: ${out#"$root"/}/html/index.html"
