#!/usr/bin/env bash
# Fails when crds/ or the chart's copy differ from what the API types generate.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT
cargo run --quiet --locked --bin kaizen -- crds >"$generated"
status=0
for f in crds/kaizen.dev.yaml charts/kaizen/crds/kaizen.dev.yaml; do
  if ! diff -u "$f" "$generated" >/dev/null; then
    echo "CRD drift: $f differs from \`kaizen crds\`; run \`make crds\`" >&2
    diff -u "$f" "$generated" | head -40 >&2 || true
    status=1
  fi
done
exit $status
