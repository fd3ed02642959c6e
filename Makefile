# Developer and CI entry points. `make test` is what CI runs (see .ci/run);
# it needs no network once Go modules and `make sdk-deps` are in place.

GO ?= go
NPM ?= npm

.PHONY: test bench demo fmt-check tidy-check sdk-deps

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	# The red team's proof that it can fail: each isolation layer off in turn.
	$(GO) test -tags redteamswitch -count=1 ./internal/redteam/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

demo:
	$(GO) run ./cmd/bulkhead demo

fmt-check:
	@out="$$(gofmt -l .)"; test -z "$$out" || { echo "gofmt needed on:"; echo "$$out"; exit 1; }

tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

sdk-deps:
	$(NPM) ci --prefix test/openai-sdk
	$(NPM) ci --prefix test/frameworks
	$(NPM) ci --ignore-scripts --prefix test/promptfoo
	$(NPM) rebuild --prefix test/promptfoo better-sqlite3
	$(NPM) ci --prefix test/mcp-everything
	$(NPM) ci --prefix test/mcp-client
	$(NPM) ci --prefix test/browser
