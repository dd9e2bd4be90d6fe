//go:build tools

// Package tools pins the upstream kwok and kwokctl that hack/ builds from source.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
)
