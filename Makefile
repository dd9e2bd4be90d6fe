# Entry points. The first run builds the pinned Kubernetes control plane from source (see README).
.PHONY: demo test bench down tools crds lint unit dist image release docs

demo: ## local control plane + CRDs + operator + examples, then `kubectl get kaizen`
	hack/demo.sh

test: ## every check and test: fmt, clippy, CRD drift, unit and integration tests
	hack/test.sh

bench: ## benchmarks on a fresh local control plane; they print their figures (BENCH=action_items for one, BENCH=peers against Argo Rollouts and Flagger, BENCH=rest for 10,000 Canaries at rest beside Argo Rollouts, BENCH=decode for decoding a watch event alone, BENCH=cache for what one cached object costs)
	hack/bench.sh $(BENCH)

down: ## stop the demo cluster and the operator (whatever KAIZEN_RUN_DIR says: the demo's is hack/.run)
	-@[ -f hack/.run/operator.pid ] && kill $$(cat hack/.run/operator.pid) 2>/dev/null
	-@[ -f hack/.run/demo-metrics.pid ] && kill $$(cat hack/.run/demo-metrics.pid) 2>/dev/null
	KAIZEN_RUN_DIR=$(CURDIR)/hack/.run KAIZEN_CLUSTER_NAME=kaizen hack/cluster.sh down

tools: ## build the pinned control-plane binaries and helm (cached in ~/.cache/kaizen)
	hack/build-tools.sh

crds: ## regenerate crds/ and the chart's copy from the API types
	cargo run --quiet --bin kaizen -- crds > crds/kaizen.dev.yaml
	cp crds/kaizen.dev.yaml charts/kaizen/crds/kaizen.dev.yaml

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

unit:
	cargo test --lib --bins

dist: ## release archives of kubectl-kaizen with sha256 sums and the krew manifest, in dist/
	hack/dist.sh

image: ## the operator's OCI image, built without a Docker engine: dist/kaizen-<version>.oci.tar; prints its digest
	hack/image.sh

release: ## dist/: image archive, chart (pinned to the image digest), plugin archives, krew manifest, SBOM, SHA256SUMS
	hack/release.sh

docs: ## the mdBook in docs/, built into dist/book with its links checked
	hack/docs.sh
