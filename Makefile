GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN     := bin/hookd
FUZZTIME ?= 30s

.PHONY: build run test vet fuzz bench bench-load bench-rollout image clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hookd

# Development run: state in ./data, 127.0.0.1:8080, a development secret made once in ./data.
run: build
	@mkdir -p data && chmod 700 data
	@test -s data/dev-webhook-secret || (head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > data/dev-webhook-secret && chmod 600 data/dev-webhook-secret)
	@echo "hookd: development webhook secret is in data/dev-webhook-secret"
	@echo "hookd: try  $(BIN) send --url http://127.0.0.1:8080/hooks/ghcr --secret-file data/dev-webhook-secret --event ping FILE"
	HOOKD_LISTEN=$${HOOKD_LISTEN:-127.0.0.1:8080} HOOKD_STATE_DIR=$${HOOKD_STATE_DIR:-./data} \
	HOOKD_WEBHOOK_SECRET_FILE=$${HOOKD_WEBHOOK_SECRET_FILE:-data/dev-webhook-secret} \
	HOOKD_LOG_FORMAT=$${HOOKD_LOG_FORMAT:-text} $(BIN) serve

# Tests that need the Docker engine skip without one; HOOKD_REQUIRE_DOCKER=1 makes them fail instead.
test:
	$(GO) test -race -count=1 -timeout 40m ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)

fuzz:
	$(GO) test ./internal/webhook/ -run '^$$' -fuzz '^FuzzIntake$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./internal/webhook/ -run '^$$' -fuzz '^FuzzPlan$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./internal/verify/ -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./internal/signature/ -run '^$$' -fuzz '^FuzzSignatureLayer$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./internal/signature/ -run '^$$' -fuzz '^FuzzBundle$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...
	$(MAKE) bench-load
	$(MAKE) bench-rollout

# Needs the Docker engine: delivery → new container answering, against the engine's own work.
bench-rollout:
	HOOKD_REQUIRE_DOCKER=1 $(GO) test -run '^$$' -bench Rollout -benchtime 15x ./bench/rollout

bench-load: build
	$(GO) run ./bench/loadgen -hookd $(BIN)

# A FROM scratch image of a static hookd, tagged IMAGE:<version> and IMAGE:latest; nothing is pulled.
# Without buildx the legacy builder is asked for (a new CLI on a new engine refuses otherwise).
image: IMAGE ?= hookd
image: IMAGE_CONTEXT ?= bin/image
image:
	@test -r /etc/ssl/certs/ca-certificates.crt || (echo "image: /etc/ssl/certs/ca-certificates.crt is missing (Debian: apt-get install ca-certificates)"; exit 1)
	mkdir -p $(IMAGE_CONTEXT)/state
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(IMAGE_CONTEXT)/hookd ./cmd/hookd
	cp /etc/ssl/certs/ca-certificates.crt deploy/Dockerfile $(IMAGE_CONTEXT)/
	if docker buildx version >/dev/null 2>&1; then build="docker buildx build --load"; else build="docker build"; export DOCKER_BUILDKIT=0; fi; \
	$$build --build-arg VERSION='$(VERSION)' --build-arg COMMIT='$(COMMIT)' \
		-t '$(IMAGE):$(subst +,-,$(VERSION))' -t '$(IMAGE):latest' $(IMAGE_CONTEXT)

clean:
	rm -rf bin
