# Consulate: `make up` runs dc1 and dc2 on this machine, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

DCS ?= 2
DETACH ?= 0
BIN := node_modules/.bin
NODE_MODULES_STAMP := node_modules/.package-lock.json

.PHONY: help install proto proto-check build typecheck test test-unit test-integration test-sim soak bench-consensus bench-catalog bench-gossip bench-gossip-sim bench-federation bench-federation-timeline bench-federation-floor up down demo certs compose clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# `npm install`, not `npm ci`: the registry our machines reach has no packages for other
# platforms, so the lockfile cannot list buf's and swc's darwin/win32 builds, and npm 11's `ci`
# refuses a lockfile without them. With every version pinned exactly in package.json and the
# lockfile present, `npm install` installs exactly the locked tree and leaves the lockfile as is.
$(NODE_MODULES_STAMP): package.json package-lock.json
	npm install --no-audit --no-fund
	@touch $@

install: $(NODE_MODULES_STAMP) ## Install the pinned dependencies

proto: install ## Lint proto/ and regenerate services/gen from it
	$(BIN)/buf lint
	$(BIN)/buf generate

proto-check: install ## Fail when proto/ breaks lint or services/gen is stale
	$(BIN)/buf lint
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(BIN)/buf generate -o "$$tmp" && \
	  if ! diff -r services/gen "$$tmp/services/gen" >/dev/null; then \
	    diff -r services/gen "$$tmp/services/gen" | head -40; \
	    echo "services/gen is stale: run 'make proto' and commit the result" >&2; exit 1; \
	  fi && echo "services/gen is up to date with proto/"

build: install ## Compile TypeScript to dist/
	$(BIN)/tsc -p tsconfig.build.json

typecheck: install ## Type-check everything, tests included
	$(BIN)/tsc -p tsconfig.json --noEmit

test: build ## Run the unit, simulation and integration tests
	$(BIN)/jest --selectProjects unit
	$(BIN)/jest --selectProjects simulation
	$(BIN)/jest --selectProjects integration --runInBand

test-unit: install ## Run the unit tests only
	$(BIN)/jest --selectProjects unit

test-integration: build ## Run the integration tests only (real processes)
	$(BIN)/jest --selectProjects integration --runInBand

test-sim: install ## Run the seeded simulator (SEEDS=1000 by default)
	SIM_SEEDS=$(or $(SEEDS),1000) $(BIN)/jest --selectProjects simulation

soak: build ## By hand: SEEDS=20000 simulated clusters (about 12 min on 2 cores), 20 leader SIGKILLs, then JEPSEN_RUNS=20 Jepsen-style runs per nemesis (about 2 h)
	SIM_SEEDS=$(or $(SEEDS),20000) SIM_FROM=$(or $(FROM),1001) $(BIN)/jest --selectProjects simulation -t seeds
	CONSENSUS_LEADER_KILLS=20 $(BIN)/jest --selectProjects integration --runInBand test/integration/consensus.test.ts -t SIGKILL
	JEPSEN_RUNS=$(or $(JEPSEN_RUNS),20) $(BIN)/jest --selectProjects integration --runInBand test/integration/jepsen.test.ts

bench-consensus: build ## By hand: Consulate against etcd 3.4, 3 servers each, back to back, then the c=1 cells taking turns (about 6 min)
	node dist/bench/consensus/run.js

bench-catalog: build ## By hand: blocking-query fan-out (1,000 / 10,000) beside etcd watch, HTTP reads against node:http, reads after a write burst (about 5 min; BURST_S=60)
	node dist/bench/catalog/run.js

bench-gossip: build ## By hand: Consulate's gossip against Serf, N = 5, 10, 20 agents, taking turns (about 10 min; SIZES=, RUNS=, EVENTS=)
	node dist/bench/gossip/run.js $(if $(SIZES),--sizes=$(SIZES),) $(if $(RUNS),--runs=$(RUNS),) $(if $(EVENTS),--events=$(EVENTS),)

bench-gossip-sim: build ## By hand: gossip at 1,000 and 10,000 members in simulation (rounds against log2 N, bytes/member/s; about 12 min, 10 GB of memory)
	node dist/bench/gossip/sim-scale.js

bench-federation: build ## By hand: a read forwarded dc1 -> dc2 against the same read in dc2 (c1 latency, c16/c64 throughput), a killed remote router until marked failed (about 4.5 min; REQUESTS=, DURATION=, RUNS=, PROFILES=, PHASES=)
	node dist/bench/federation/run.js $(if $(REQUESTS),--requests=$(REQUESTS),) $(if $(DURATION),--duration=$(DURATION),) $(if $(RUNS),--runs=$(RUNS),) $(if $(PROFILES),--profiles=$(PROFILES),) $(if $(PHASES),--phases=$(PHASES),)

bench-federation-timeline: build ## By hand: where a forwarded read's time goes, process by process: work, sends, the way between processes (about 1.5 min; REQUESTS=)
	node dist/bench/federation/timeline.js $(if $(REQUESTS),--requests=$(REQUESTS),)

bench-federation-floor: build ## By hand: the floor under a forwarded read: its three hops with bare grpc-js streams, and with our Calls streams, no role work (about 1.5 min; REQUESTS=)
	node dist/bench/federation/floor.js $(if $(REQUESTS),--requests=$(REQUESTS),)

up: build ## Run dc1 and dc2 (DCS=3 adds dc3; DETACH=1 returns once healthy)
	node dist/deploy/up.js --dcs=$(DCS) $(if $(filter 1,$(DETACH)),--detach,)

down: ## Stop what `make up DETACH=1` started
	node dist/deploy/up.js --down

demo: build ## Walk the segments and areas guides against a running `make up`, checking each step (re-runnable)
	node dist/deploy/demo.js

compose: build ## Regenerate compose.yaml from deploy/topology.ts
	node dist/deploy/compose.js compose.yaml

certs: ## Make the dev CA and a server certificate per datacenter in deploy/tls/ (kept when present)
	bash deploy/tls/make-certs.sh deploy/tls $(addprefix dc,$(shell seq 1 $(DCS)))

clean: ## Remove build output and local cluster state
	rm -rf dist .consulate
