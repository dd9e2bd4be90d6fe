#!/usr/bin/env bash
# Prints an argocd-cm patch carrying Kaizen's health checks and Canary actions from
# charts/kaizen/argocd/ (Argo CD's resource_customizations layout), for
#   kubectl -n argocd patch configmap argocd-cm --patch-file <(hack/argocd-cm.sh)
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../charts/kaizen/argocd/kaizen.dev" && pwd)"
indent() { sed "s/^/$1/"; }
echo "data:"
for kind in Incident ActionItem Canary; do
  echo "  resource.customizations.health.kaizen.dev_${kind}: |"
  indent "    " <"$dir/$kind/health.lua"
done
echo "  resource.customizations.actions.kaizen.dev_Canary: |"
echo "    discovery.lua: |"
indent "      " <"$dir/Canary/actions/discovery.lua"
echo "    definitions:"
for action in promote abort retry resume; do
  echo "    - name: $action"
  echo "      action.lua: |"
  indent "        " <"$dir/Canary/actions/$action/action.lua"
done
