# tongdao — the commands a developer needs. CMake does the building; this file only
# names the configurations.
#
#   make run     install what is missing, build Release, start tongdao-server
#   make test    install what is missing, build, run every test through ctest
#   make build   Release build into build/release (binaries in build/release/bin/)
#   make fuzz    run every fuzz target for FUZZ_SECONDS each (default 60)
#   make bench   build Release and run the micro-benchmarks
#   make deb     the Debian packages (docs/INSTALL.md) into build/deb

SHELL      := /bin/bash
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
RUN_ARGS   ?=

RELEASE := build/release
ASAN    := build/asan
DEB     := build/deb

.PHONY: all deps deps-build build asan run test test-asan test-release fuzz bench deb clean

all: build

deps:
	@scripts/install-deps.sh all

deps-build:
	@scripts/install-deps.sh build

$(RELEASE)/build.ninja:
	cmake -S . -B $(RELEASE) -G Ninja -DCMAKE_BUILD_TYPE=Release -DTONGDAO_WERROR=ON

$(ASAN)/build.ninja:
	CC=clang CXX=clang++ cmake -S . -B $(ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DTONGDAO_SANITIZE=ON -DTONGDAO_FUZZ=ON -DTONGDAO_WERROR=ON

# Release for /usr (the multiarch library directory), without tests and benchmarks.
$(DEB)/build.ninja:
	cmake -S . -B $(DEB) -G Ninja -DCMAKE_BUILD_TYPE=Release -DTONGDAO_WERROR=ON \
	  -DCMAKE_INSTALL_PREFIX=/usr -DTONGDAO_TESTS=OFF -DTONGDAO_BENCH=OFF

# A tree configured before node_modules/typescript existed has no web/ targets: configure it again.
web-reconfigure = if [ -f node_modules/typescript/bin/tsc ] && ! grep -q '^build web_page:' $(1)/build.ninja; then \
	  echo "web/ is now buildable: cmake $(1)"; cmake $(1) >/dev/null; fi

build: deps-build $(RELEASE)/build.ninja
	@$(call web-reconfigure,$(RELEASE))
	cmake --build $(RELEASE) -j $(JOBS)

asan: deps $(ASAN)/build.ninja
	@$(call web-reconfigure,$(ASAN))
	cmake --build $(ASAN) -j $(JOBS)

# The chat server, anonymous, its data in build/chat-data: ws and http on 8080, wss and https
# on 8443 with a throwaway CA made into build/certs.
run: build
	@scripts/make-test-certs.sh build/certs
	$(RELEASE)/bin/tongdao-server --anonymous --data-dir build/chat-data \
	  --tls-cert build/certs/server.pem --tls-key build/certs/server.key $(RUN_ARGS)

# Unit, interop and fuzz-smoke tests under ASan + UBSan; then what needs a Release build.
test: deps
	@$(MAKE) --no-print-directory test-asan test-release

test-asan: asan
	cd $(ASAN) && ctest --output-on-failure -j $(JOBS) -LE release_only

test-release: deps $(RELEASE)/build.ninja
	@$(call web-reconfigure,$(RELEASE))
	cmake --build $(RELEASE) -j $(JOBS)
	cd $(RELEASE) && ctest --output-on-failure -j $(JOBS) -L release_only

fuzz: asan
	@set -e; for t in $(ASAN)/bin/fuzz_*; do \
	  echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  mkdir -p fuzz/corpus-$$(basename $$t); \
	  $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 fuzz/corpus-$$(basename $$t) fuzz/seeds/$$(basename $$t | sed s/^fuzz_//); \
	done

bench: build
	@for b in $(RELEASE)/bin/bench_*; do echo "== $$b"; $$b; done

# tongdao-server, tongdao, libtongdao0 and libtongdao-dev as build/deb/*.deb.
deb: deps-build $(DEB)/build.ninja
	@$(call web-reconfigure,$(DEB))
	cmake --build $(DEB) -j $(JOBS)
	cd $(DEB) && cpack

clean:
	rm -rf build
