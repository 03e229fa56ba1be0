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
	@# pero and pero-runner load ONNX Runtime (pero ocr, the OCR stages): cgo. The watchdog is static.
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/pero ./cli/cmd/pero
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/pero-runner ./runner/cmd/pero-runner
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/pero-watchdog ./watchdog/cmd/pero-watchdog

.PHONY: demo
demo: ## Pages in, OCR text out: builds, starts the services, runs a watchdog and prints the results
	scripts/demo.sh

.PHONY: test
test: ## Run unit, integration and end-to-end tests (needs `make services`), and the training smoke test when torch is installed
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	@if $(PYTHON) -c 'import torch, onnx' 2>/dev/null; then \
		echo "$(PYTHON) -m unittest discover -s training"; $(PYTHON) -m unittest discover -s training; \
	else echo "training smoke test skipped: no python3-torch/python3-onnx (training/setup.sh installs them)"; fi

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

# --- OCR function: models, cgo build, benchmark, fuzzing ---
CORPUS ?= ../shared/corpus/public
FUZZTIME ?= 60s
TESSERACT_PKGS := tesseract-ocr tesseract-ocr-eng tesseract-ocr-ces tesseract-ocr-deu tesseract-ocr-fra

.PHONY: models
models: ## Put ONNX Runtime and the OCR models in models/ (PP-OCRv4 copied from ../shared/assets, else downloaded; sha256 checked)
	scripts/models.sh

.PHONY: model-archive
model-archive: models ## Pack models/ocr as a stage model archive, bin/ocr-models.tar.gz (pero stage create --model-archive takes it, or the directory)
	@mkdir -p $(BIN)
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -czf $(BIN)/ocr-models.tar.gz -C models/ocr .
	@sha256sum $(BIN)/ocr-models.tar.gz

# --- the recognizer: training from scratch (Debian's python3-torch), export to training/model ---
# Five runs, as the shipped model was made: TRAIN_STEPS from scratch, then FINETUNE_STEPS,
# POLISH_STEPS, FINISH_STEPS and RARE_STEPS (words with rare letters and signs mixed in) more,
# each from the export of the one before at a lower or equal
# peak learning rate; each resumes from its checkpoint and stops make (exit 75) when
# TRAIN_MINUTES end it early. Then the export and its integer version.
PYTHON ?= /usr/bin/python3
TRAIN_DIR ?= training/runs/latin
TRAIN_STEPS ?= 5600
FINETUNE_STEPS ?= 4200
POLISH_STEPS ?= 600
FINISH_STEPS ?= 2000
RARE_STEPS ?= 2000
TRAIN_MINUTES ?= 0

.PHONY: train-recognizer
train-recognizer: ## Train the recognizer from scratch or resume it (TRAIN_STEPS, FINETUNE_STEPS, POLISH_STEPS, FINISH_STEPS, RARE_STEPS, TRAIN_MINUTES=0: no limit), export and quantise it to training/model
	training/setup.sh
	$(PYTHON) training/train.py --out $(TRAIN_DIR) --steps $(TRAIN_STEPS) --minutes $(TRAIN_MINUTES)
	$(PYTHON) training/export.py --checkpoint $(TRAIN_DIR)/checkpoint.pt --out $(TRAIN_DIR)/export
	$(PYTHON) training/train.py --init $(TRAIN_DIR)/export/pero-latin-rec.onnx --out $(TRAIN_DIR)-finetune \
		--steps $(FINETUNE_STEPS) --lr 5e-4 --minutes $(TRAIN_MINUTES)
	$(PYTHON) training/export.py --checkpoint $(TRAIN_DIR)-finetune/checkpoint.pt --out $(TRAIN_DIR)-finetune/export
	$(PYTHON) training/train.py --init $(TRAIN_DIR)-finetune/export/pero-latin-rec.onnx --out $(TRAIN_DIR)-polish \
		--steps $(POLISH_STEPS) --lr 1e-4 --minutes $(TRAIN_MINUTES)
	$(PYTHON) training/export.py --checkpoint $(TRAIN_DIR)-polish/checkpoint.pt --out $(TRAIN_DIR)-polish/export
	$(PYTHON) training/train.py --init $(TRAIN_DIR)-polish/export/pero-latin-rec.onnx --out $(TRAIN_DIR)-finish \
		--steps $(FINISH_STEPS) --lr 1e-4 --seed 20261130 --threads 1 --minutes $(TRAIN_MINUTES)
	$(PYTHON) training/export.py --checkpoint $(TRAIN_DIR)-finish/checkpoint.pt --out $(TRAIN_DIR)-finish/export
	$(PYTHON) training/train.py --init $(TRAIN_DIR)-finish/export/pero-latin-rec.onnx --out $(TRAIN_DIR)-rare \
		--steps $(RARE_STEPS) --lr 1e-4 --seed 20261201 --threads 1 --rare-share 0.2 --minutes $(TRAIN_MINUTES)
	$(PYTHON) training/export.py --checkpoint $(TRAIN_DIR)-rare/checkpoint.pt --out training/model
	$(PYTHON) training/quantize.py --model training/model/pero-latin-rec.onnx --out training/model/pero-latin-rec-int8.onnx

.PHONY: train-lm
train-lm: ## Build the character language model the recognizer's decoding reads with (training/lm.py) into training/model
	training/setup.sh
	$(PYTHON) training/lm.py --out training/model/pero-latin.lm.gz

.PHONY: bench-ocr
bench-ocr: models build ## OCR accuracy and speed against tesseract on $(CORPUS) (installs tesseract when missing)
	@missing=$$(for p in $(TESSERACT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get install -y -qq $$missing || { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing; }; fi
	$(GO) run ./scripts/benchocr -corpus $(CORPUS) -pero $(BIN)/pero -models models -out $(BIN)/bench-ocr.md

.PHONY: fuzz-ocr
fuzz-ocr: ## Fuzz the image decoder and the PAGE XML reader for $(FUZZTIME) each
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeImage$$' -fuzztime $(FUZZTIME) ./function/ocr
	$(GO) test -run '^$$' -fuzz '^FuzzReadPAGE$$' -fuzztime $(FUZZTIME) ./function/ocr

# --- runner ---
BENCH_MESSAGES ?= 5000

.PHONY: bench-pipeline
bench-pipeline: ## Messages/s through one noop stage at batch 1, 8, 32 beside a raw amqp091 loop (needs `make services`)
	@PERO_BENCH_PIPELINE=1 PERO_BENCH_MESSAGES=$(BENCH_MESSAGES) $(GO) test -count=1 -timeout 30m -v \
		-run '^TestBenchPipeline$$' ./runner/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok '

# --- watchdog ---
FUNCTION_IMAGE ?= pero-worker/function:dev
WATCHDOG_IMAGE ?= pero-worker/watchdog:dev
CLI_IMAGE ?= pero-worker/cli:dev

.PHONY: images
images: image-function image-watchdog image-cli ## Build the function, watchdog and CLI images offline, FROM scratch (run `make models` first for ONNX Runtime and the models)
	@for i in $(FUNCTION_IMAGE) $(WATCHDOG_IMAGE) $(CLI_IMAGE); do \
		printf '  %-36s %s\n' "$$i" "$$(docker image inspect -f '{{.Size}}' "$$i" | awk '{printf "%.1f MB", $$1/1e6}')"; done

.PHONY: image-function
image-function: ## Build the function image offline, FROM scratch (FUNCTION_IMAGE=tag; ONNX Runtime from models/ or ../shared/assets when present)
	images/function/build.sh -t $(FUNCTION_IMAGE)

.PHONY: image-watchdog
image-watchdog: ## Build the watchdog image offline, FROM scratch (WATCHDOG_IMAGE=tag)
	images/watchdog/build.sh -t $(WATCHDOG_IMAGE)

.PHONY: image-cli
image-cli: ## Build the CLI image offline, FROM scratch, with the init script and models/ocr (CLI_IMAGE=tag)
	images/cli/build.sh -t $(CLI_IMAGE)

.PHONY: bench-scale
bench-scale: ## Watchdog reaction and container cold start against a bare docker run (needs `make services` and Docker; PERO_BENCH_ROUNDS=5)
	@set -o pipefail; PERO_BENCH_SCALE=1 $(GO) test -count=1 -timeout 30m -run '^TestBenchScale$$' -v ./watchdog/ \
		| grep -v -e '^=== RUN' -e 'world_test.go'

# --- reliability: fuzzing, load ---
LOAD_PAGES ?= 10000

.PHONY: fuzz
fuzz: ## Run every fuzz target of the module for $(FUZZTIME) each (CI runs FUZZTIME=500x)
	@set -eo pipefail; for file in $$(grep -rl --include='*_test.go' --exclude-dir=.services --exclude-dir=out '^func Fuzz' . | sort); do \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$file"); do \
			echo "fuzz $$target ($$(dirname "$$file"), $(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$(dirname "$$file")" | grep -v '^fuzz: elapsed'; \
		done; \
	done

.PHONY: bench-load
bench-load: ## $(LOAD_PAGES) pages through two stages with the watchdog scaling: throughput, latency, peak RSS (needs Docker; starts its own services)
	@set -o pipefail; PERO_BENCH_LOAD=1 PERO_BENCH_LOAD_PAGES=$(LOAD_PAGES) $(GO) test -count=1 -timeout 60m -v \
		-run '^TestBenchLoad$$' ./internal/reliability/ | grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok '
