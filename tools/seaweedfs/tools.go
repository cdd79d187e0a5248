//go:build tools

// Package tools pins SeaweedFS, the S3-compatible object storage the tests run
// hamn against. SeaweedFS's own go.mod has a replace directive, which
// `go install pkg@version` refuses, so scripts/install-tools builds its `weed`
// command from this module instead, verified against go.sum.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
