// kstatus reads Kubernetes objects as JSON on stdin (one object, or a List of them) and prints, one JSON
// line per object, the status that sigs.k8s.io/cli-utils' kstatus library computes for it: the library
// Flux's health checks and `kubectl wait`-style tooling (kpt, Config Sync) read. Kaizen's tests feed it
// the objects the operator wrote, so conformance is checked by the library itself, not a re-implementation.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type line struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var obj map[string]interface{}
	// apimachinery's decoder keeps integers int64, as the accessors kstatus uses require.
	if err := utiljson.Unmarshal(raw, &obj); err != nil {
		fail(err)
	}
	items := []interface{}{obj}
	if obj["kind"] == "List" || obj["items"] != nil {
		items, _ = obj["items"].([]interface{})
	}
	out := json.NewEncoder(os.Stdout)
	for _, item := range items {
		m, ok := item.(map[string]interface{})
		if !ok {
			fail(fmt.Errorf("an item is not an object"))
		}
		u := &unstructured.Unstructured{Object: m}
		res, err := status.Compute(u)
		if err != nil {
			fail(fmt.Errorf("%s/%s: %w", u.GetKind(), u.GetName(), err))
		}
		if err := out.Encode(line{u.GetKind(), u.GetName(), res.Status.String(), res.Message}); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
