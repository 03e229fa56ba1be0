# pero-worker. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/pero-worker/pero-worker/internal/version.Version=$(VERSION)
BIN := bin
TEST_TIMEOUT ?= 15m
PROTOC_GEN_GO := $(shell $(GO) env GOPATH)/bin/protoc-gen-go

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n\n"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the binaries into bin/ (pero, pero-runner, pero-watchdog)
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/pero ./cli/cmd/pero

.PHONY: test
test: ## Run unit, integration and end-to-end tests (needs `make services`)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

.PHONY: test-short
test-short: ## Run only the tests that need no services
	$(GO) test -short -count=1 ./...

.PHONY: lint
lint: ## gofmt, go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: services
services: ## Install (if missing) and start RabbitMQ, ZooKeeper and FTP on 127.0.0.1
	scripts/services.sh start

.PHONY: services-stop
services-stop: ## Stop the services started by `make services`
	scripts/services.sh stop

.PHONY: services-status
services-status: ## Show whether the services are up
	scripts/services.sh status

.PHONY: proto
proto: ## Regenerate internal/message/pero.pb.go (Debian's protobuf-compiler)
	@command -v protoc >/dev/null || { sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; $$sudo apt-get install -y -qq protobuf-compiler; }
	@test -x $(PROTOC_GEN_GO) || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	protoc -I internal/message -I /usr/include --plugin=protoc-gen-go=$(PROTOC_GEN_GO) \
		--go_out=internal/message --go_opt=paths=source_relative internal/message/pero.proto

.PHONY: clean
clean: ## Remove build outputs
	rm -rf $(BIN)
