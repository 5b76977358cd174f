# make test installs what the tests need and runs every test.
GO ?= go
NPM_DIR := interop/js
BIN := bin/tandem

.PHONY: test deps node-deps vet go-test js-test build bench bench-compare clean

test: deps vet go-test js-test

deps: node-deps

# Node.js and npm come from Debian when the machine lacks them.
node-deps:
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm)
	npm ci --prefix $(NPM_DIR) --no-audit --no-fund

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './$(NPM_DIR)/*')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

go-test:
	TANDEM_REQUIRE_NODE=1 $(GO) test -race -timeout 15m ./...

build:
	$(GO) build -o $(BIN) ./cmd/tandem

# The JavaScript interop suite: real automerge-repo clients against tandem serve.
js-test: build
	cd $(NPM_DIR) && TANDEM_SERVER_CMD="$(CURDIR)/$(BIN) serve --addr 127.0.0.1:{port} --data {dir}" npm test

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./bench/...

# Tandem against the reference automerge-repo sync server (bench/reference),
# same scenarios, same Go client, in alternation; writes bench/RESULTS.md.
bench-compare: build
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm)
	npm ci --prefix bench/reference --no-audit --no-fund
	$(GO) run ./bench/compare --tandem $(BIN) --reference bench/reference --out bench/RESULTS.md

clean:
	rm -rf bin
