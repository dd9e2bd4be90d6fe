//go:build tools

// Package tools pins the upstream helm CLI that hack/ builds from source (the chart tests render and
// install charts/kaizen with it).
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
