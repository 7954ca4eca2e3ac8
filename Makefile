# securemsg — one entry point for building, testing and running the suite locally.
# `make help` lists the targets. Tools are pinned and installed into .tmp/bin (scripts/lib/tools.sh).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules --warn-undefined-variables

FUZZTIME ?= 10s
BENCHTIME ?= 1s

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: up
up: ## Install (first run) and start the dev stack, the four services and the reference portal (127.0.0.1:8080); print the endpoints. TRACES=1 adds Jaeger (127.0.0.1:16686) and traces the services.
	$(if $(TRACES),SECUREMSG_TRACES=$(TRACES)) scripts/stack.sh up

.PHONY: down
down: ## Stop what `make up` started (never the machine's own Postgres or NATS).
	scripts/stack.sh down

.PHONY: status
status: ## Show every endpoint of the dev stack and whether it is healthy.
	scripts/stack.sh status

.PHONY: test
test: ## Bring the stack up if needed and run every check and every module's tests with -race.
	scripts/test.sh

.PHONY: generate
generate: ## Regenerate gen/ and web/portal/src/gen (TypeScript) from proto/ from scratch with the pinned buf and plugins.
	scripts/generate.sh

.PHONY: check-generate
check-generate: ## Fail when gen/ or web/portal/src/gen is stale against proto/.
	scripts/generate.sh --check

.PHONY: lint
lint: ## buf lint, gofmt, go vet and golangci-lint (with the layer rules) over every module.
	scripts/lint.sh

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 10s) each.
	scripts/fuzz.sh $(FUZZTIME)

.PHONY: bench
bench: ## Run the benchmarks against the local stack (growth curves at three sizes included; GROWTH=0 skips them); print value/baseline/ratio/target and write .tmp/bench/results.json.
	BENCHTIME=$(BENCHTIME) scripts/bench.sh

.PHONY: demo
demo: ## Walk through the suite on the local stack (patient, care team, proxy, auditor); exit 0 only if every step held.
	scripts/stack.sh up >/dev/null
	go run ./devstack/cmd/demo

.PHONY: load
load: ## A bounded mixed workload on a private stack: throughput, p50/p99 per rpc, errors, peak memory (LOAD_DURATION=30s).
	scripts/load.sh

.PHONY: drill
drill: ## Backup and restore drill, 10 threads (DRILL_THREADS=N): schemas, bucket and Transit snapshot restored fresh, read back byte-exact, audit log continues (make test runs it with 2).
	scripts/drill.sh

.PHONY: build
build: ## Build every binary into .tmp/stack/bin.
	mkdir -p .tmp/stack/bin
	for s in messaging attachment notification audit; do \
	  if [ -d services/$$s/cmd/$$s ]; then go build -o .tmp/stack/bin/$$s ./services/$$s/cmd/$$s; fi; done
	go build -o .tmp/stack/bin/securemsgctl ./services/ctl/cmd/securemsgctl

.PHONY: tidy
tidy: ## go mod tidy in every module, then sync the workspace.
	for d in $$(go list -m -f '{{.Dir}}'); do (cd $$d && go mod tidy); done
	go work sync
