//go:build tools

// Package tools pins cosign, built from the Go module proxy by hack/build-tools.sh.
package tools

import _ "github.com/sigstore/cosign/v3/cmd/cosign"
