# dure — the two commands that matter on a fresh machine:
#   make dev    build dure and run a whole cluster (1 server, 2 agents) on this machine
#   make test   run every test (unit, fuzz seeds, end-to-end with real processes)

GO      ?= go
BIN     := bin/dure
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: build dev test test-short fuzz bench vet clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/dure

dev: build
	./$(BIN) dev

test: vet
	$(GO) test -count=1 -timeout 20m ./...

test-short:
	$(GO) test -count=1 -short ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2x ./internal/sched/ ./internal/exec/

clean:
	rm -rf bin
