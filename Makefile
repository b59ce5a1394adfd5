# Corten: everything a developer or CI runs. `make run` starts a single-node server in the
# foreground; `make test` is exactly what CI runs (.ci/run).

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
# Outside the clone so repeated CI runs on one machine build incrementally. Override freely.
export CARGO_TARGET_DIR ?= /var/tmp/corten-target
# Features that switch on the shared test suites (the store conformance suite).
TEST_FEATURES ?= corten-store/testing
# `make run` settings.
DATA_DIR ?= ./.corten-data
BIND_ADDRESS ?= 127.0.0.1
HTTPS_PORT ?= 6443
# OS packages the build needs: libclang for RocksDB's bindings, protoc and the protobuf
# well-known types for the gRPC code (raft, and the etcd client of the bench).
OS_PACKAGES := libclang-dev protobuf-compiler libprotobuf-dev clang
# What the images need: gcc and a static libc for the pause binary, busybox-static for busybox.
IMAGE_PACKAGES := gcc libc6-dev busybox-static python3
# What the end-to-end tests drive besides kubectl (which is not a Debian package here), and the
# container runtime the kubelet tests run pods on (containerd, runc, the CNI plugins, iptables).
TEST_PACKAGES := curl containerd runc containernetworking-plugins iptables $(IMAGE_PACKAGES)
# Where `make images` writes the air-gap image tarballs (the containerd tests import them).
export CORTEN_IMAGES_DIR ?= $(CURDIR)/images/out

.PHONY: help run test fmt lint bench os-deps images

help:
	@echo "make run    build (release) and run 'corten server' in the foreground (data in $(DATA_DIR))"
	@echo "make test   everything CI runs: OS packages, fmt check, clippy, all tests"
	@echo "make fmt    format the code"
	@echo "make lint   clippy with warnings as errors"
	@echo "make bench  run the benches (results are recorded in docs/PERF.md)"
	@echo "make images build the air-gap images (pause, busybox) into $(CORTEN_IMAGES_DIR)"

run: OS_PACKAGES += $(IMAGE_PACKAGES)
run: os-deps images
	mkdir -p "$(DATA_DIR)/agent/images"
	cp "$(CORTEN_IMAGES_DIR)"/*.tar "$(DATA_DIR)/agent/images/"
	$(CARGO) build --release -p corten
	exec "$(CARGO_TARGET_DIR)/release/corten" server --data-dir "$(DATA_DIR)" --bind-address "$(BIND_ADDRESS)" --https-port "$(HTTPS_PORT)"

test: OS_PACKAGES += $(TEST_PACKAGES)
test: os-deps images
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features "$(TEST_FEATURES)" -- -D warnings
	$(CARGO) build -p corten
	CORTEN_BIN="$(CARGO_TARGET_DIR)/debug/corten" $(CARGO) test --workspace --features "$(TEST_FEATURES)"

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets --features "$(TEST_FEATURES)" -- -D warnings

# The store bench runs etcd 3.4 side by side (Debian's etcd-server). BENCH_ARGS go to the store
# bench, e.g. `make bench BENCH_ARGS="--backends corten,etcd --scenarios put"` (see `-- --help`);
# API_BENCH_ARGS to the API bench (the release binary over HTTPS), e.g. `--objects 2000`.
bench: os-deps
	@command -v etcd >/dev/null || { \
	  sudo=(); if (( EUID != 0 )); then sudo=(sudo -n); fi; \
	  "$${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	  "$${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends etcd-server; }
	$(CARGO) bench -p corten-store-raft --bench store -- $(BENCH_ARGS)
	$(CARGO) build --release -p corten
	CORTEN_BIN="$(CARGO_TARGET_DIR)/release/corten" $(CARGO) bench -p corten-tests --bench api -- $(API_BENCH_ARGS)

# The air-gap images, built offline and deterministically (see images/build.py).
images: OS_PACKAGES += $(IMAGE_PACKAGES)
images: os-deps
	python3 images/build.py "$(CORTEN_IMAGES_DIR)"

# Installs the OS packages that are missing (Debian/Ubuntu). Fails loudly when it cannot.
os-deps:
	@command -v $(CARGO) >/dev/null || { echo "error: $(CARGO) not found; install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
	@missing=(); \
	for pkg in $(OS_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$$pkg"); \
	done; \
	if (( $${#missing[@]} )); then \
	  echo "installing missing OS packages: $${missing[*]}"; \
	  command -v apt-get >/dev/null || { echo "error: apt-get not found; install $${missing[*]} yourself" >&2; exit 1; }; \
	  sudo=(); if (( EUID != 0 )); then sudo=(sudo -n); fi; \
	  "$${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	  "$${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$${missing[@]}"; \
	fi
