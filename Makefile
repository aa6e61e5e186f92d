# Beacon: one GNU Makefile (no autotools, no CMake).
#
#   make               build/beacond (optimised)
#   make test          install deps, format check, dependency check, then
#                      unit tests, fuzz-corpus replay and integration tests,
#                      all built with -fsanitize=address,undefined
#   make fuzz          run each libFuzzer target for FUZZ_SECONDS
#   make test-fault    long fault-injection run (DURATION=<s> SEED=<n>)
#   make format        reformat with clang-format
#   make bench         Beacon against etcd, 3-node clusters (bench/compare.sh)

CC       ?= cc
SANCC    ?= clang
PKGS     := libuv sqlite3 jansson libmicrohttpd raft libcurl libxxhash libsodium gnutls
RAFT_MIN := 0.17.1

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	    -Wmissing-prototypes -Wformat=2 -Wimplicit-fallthrough -Wvla
CFLAGS   ?= -O2 -g
CPPFLAGS := -std=c11 -D_GNU_SOURCE -I. -MMD -MP
SANFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	    -fno-sanitize-recover=undefined

# Modules, each an archive; beacond, tests and fuzzers link the same ones.
MODULES  := server dns raft health kv common
LIBSRC_server := $(filter-out server/main.c,$(wildcard server/*.c))
LIBSRC_raft   := $(wildcard raft/*.c)
LIBSRC_health := $(wildcard health/*.c)
LIBSRC_dns    := $(wildcard dns/*.c)
LIBSRC_kv     := $(wildcard kv/*.c)
LIBSRC_common := $(wildcard common/*.c)

B  := build
BS := build/san

.PHONY: all deps check-raft test check unit fuzz-replay integration fuzz \
	fault-short test-fault \
	format format-check check-deps check-headers clean bench install \
	install-client
all: deps $(B)/beacond

deps:
	@bash deploy/install-deps.sh
	@$(MAKE) --no-print-directory check-raft

check-raft:
	@pkg-config --atleast-version=$(RAFT_MIN) raft || { \
	  echo "error: libraft >= $(RAFT_MIN) is required (found: $$(pkg-config --modversion raft 2>/dev/null || echo none))."; \
	  echo "       0.15.0 can lose acknowledged writes. Run deploy/install-deps.sh as root."; exit 1; }

# pkg-config runs lazily: after deps installed the packages.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lm

define module_rules
$(B)/$(1).a: $(patsubst %.c,$(B)/%.o,$(LIBSRC_$(1)))
	@rm -f $$@
	$(AR) rcs $$@ $$^
$(BS)/$(1).a: $(patsubst %.c,$(BS)/%.o,$(LIBSRC_$(1)))
	@rm -f $$@
	$(AR) rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call module_rules,$(m))))

ARCHIVES    := $(foreach m,$(MODULES),$(B)/$(m).a)
SANARCHIVES := $(foreach m,$(MODULES),$(BS)/$(m).a)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(WARN) -c $< -o $@

$(BS)/%.o: %.c
	@mkdir -p $(dir $@)
	$(SANCC) $(CPPFLAGS) $(PKG_CFLAGS) $(SANFLAGS) $(WARN) -c $< -o $@

$(B)/beacond: $(B)/server/main.o $(ARCHIVES)
	$(CC) $(CFLAGS) -o $@ $^ $(PKG_LIBS)

$(BS)/beacond: $(BS)/server/main.o $(SANARCHIVES)
	$(SANCC) $(SANFLAGS) -o $@ $^ $(PKG_LIBS)

# ---- libbeacon and the beacon CLI (client/) ----------------------------------
# libbeacon (client/*.c but cli*.c) stands alone: built position-independent
# with hidden symbols (BEACON_API marks the API) into build/libbeacon.so and
# build/libbeacon.a. The CLI links the static library and common.a.
CLIENT_LIBSRC := $(filter-out client/cli%.c,$(wildcard client/*.c))
CLIENT_CLISRC := $(wildcard client/cli*.c)
CLIENT_LIBS    = $(shell pkg-config --libs libcurl jansson) -lpthread
CLI_LIBS       = $(CLIENT_LIBS) $(shell pkg-config --libs libxxhash)
BEACON_VERSION = $(shell sed -n 's/^\#define BEACON_VERSION[^"]*"\(.*\)"/\1/p' client/beacon.h)
BP := build/pic

all: $(B)/beacon $(B)/libbeacon.a $(B)/libbeacon.so $(B)/beacon.pc \
	$(B)/examples/example-service

$(BP)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(WARN) -fPIC -fvisibility=hidden -c $< -o $@

$(B)/libbeacon.a: $(patsubst %.c,$(BP)/%.o,$(CLIENT_LIBSRC))
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/libbeacon.so: $(patsubst %.c,$(BP)/%.o,$(CLIENT_LIBSRC))
	$(CC) $(CFLAGS) -shared -Wl,-soname,libbeacon.so.0 -Wl,--no-undefined \
	    -o $@ $^ $(CLIENT_LIBS)
	ln -sf libbeacon.so $(B)/libbeacon.so.0

$(BS)/libbeacon.a: $(patsubst %.c,$(BS)/%.o,$(CLIENT_LIBSRC))
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/beacon: $(patsubst %.c,$(B)/%.o,$(CLIENT_CLISRC)) $(B)/libbeacon.a $(B)/common.a
	$(CC) $(CFLAGS) -o $@ $^ $(CLI_LIBS)

$(BS)/beacon: $(patsubst %.c,$(BS)/%.o,$(CLIENT_CLISRC)) $(BS)/libbeacon.a $(BS)/common.a
	$(SANCC) $(SANFLAGS) -o $@ $^ $(CLI_LIBS)

$(B)/beacon.pc: client/beacon.pc.in client/beacon.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(BEACON_VERSION)|' $< > $@

# The example links the shared library, as an application would.
$(B)/examples/example-service: $(B)/client/examples/example_service.o $(B)/libbeacon.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< -L$(B) -lbeacon -Wl,-rpath,'$$ORIGIN/..'

# The libbeacon driver of tests/cluster/test_libbeacon.py.
$(BS)/tests/cluster/libbeacon_driver: $(BS)/tests/cluster/libbeacon_driver.o $(BS)/libbeacon.a
	$(SANCC) $(SANFLAGS) -o $@ $^ $(CLIENT_LIBS)

# ---- unit tests (Check), under the sanitizers -------------------------------
UNIT_SRC  := $(wildcard tests/unit/*/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BS)/tests/unit/%,$(UNIT_SRC))
TESTLIB   := $(patsubst %.c,$(BS)/%.o,$(wildcard tests/lib/*.c))

$(BS)/tests/unit/%: $(BS)/tests/unit/%.o $(TESTLIB) $(SANARCHIVES)
	$(SANCC) $(SANFLAGS) -o $@ $^ $(PKG_LIBS) $$(pkg-config --libs check)

# The client's tests link libbeacon and the CLI's parsers.
$(BS)/tests/unit/client/%: $(BS)/tests/unit/client/%.o $(TESTLIB) $(BS)/client/cli_args.o $(BS)/libbeacon.a $(SANARCHIVES)
	$(SANCC) $(SANFLAGS) -o $@ $^ $(PKG_LIBS) $$(pkg-config --libs check)

unit: deps $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; CK_VERBOSITY=normal $$t; done

# ---- fuzz targets -------------------------------------------------------------
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_SECONDS ?= 60

# Replay binaries: the target plus a main() that runs the committed corpus.
$(BS)/tests/fuzz/replay_%: $(BS)/tests/fuzz/fuzz_%.o $(BS)/tests/fuzz/replay_main.o $(SANARCHIVES)
	$(SANCC) $(SANFLAGS) -o $@ $^ $(PKG_LIBS)

# For fuzzing, the archives are built again with coverage instrumentation
# (-fsanitize=fuzzer-no-link), so that libFuzzer sees the code under test.
BF := build/fuzz
FUZZFLAGS := $(SANFLAGS) -fsanitize=fuzzer-no-link
$(BF)/%.o: %.c
	@mkdir -p $(dir $@)
	$(SANCC) $(CPPFLAGS) $(PKG_CFLAGS) $(FUZZFLAGS) $(WARN) -c $< -o $@
define fuzz_module_rules
$(BF)/$(1).a: $(patsubst %.c,$(BF)/%.o,$(LIBSRC_$(1)))
	@rm -f $$@
	$(AR) rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call fuzz_module_rules,$(m))))
FUZZARCHIVES := $(foreach m,$(MODULES),$(BF)/$(m).a)

$(BF)/fuzz_%: $(BF)/tests/fuzz/fuzz_%.o $(FUZZARCHIVES)
	$(SANCC) $(SANFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS)

fuzz-replay: deps $(patsubst %,$(BS)/tests/fuzz/replay_%,$(FUZZ_NAMES))
	@set -e; for f in $(FUZZ_NAMES); do \
	  $(BS)/tests/fuzz/replay_$$f tests/fuzz/corpus/$$f; done

fuzz: deps $(patsubst %,$(BF)/fuzz_%,$(FUZZ_NAMES))
	@set -e; for f in $(FUZZ_NAMES); do \
	  mkdir -p $(BF)/corpus-$$f $(BF)/crashes; \
	  $(BF)/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(BF)/crashes/$$f- $(BF)/corpus-$$f tests/fuzz/corpus/$$f; done

# ---- integration tests: real beacond processes, curl and python3-consul -----
integration: $(BS)/beacon $(BS)/tests/cluster/libbeacon_driver $(B)/examples/example-service
integration: deps $(BS)/beacond
	BEACOND=$(CURDIR)/$(BS)/beacond /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/cluster

# ---- fault injection (tests/fault/README.md; needs root) ----------------------
# fault-short (in make test): the checkers' unit tests and a one-minute run.
# test-fault: the long run, make test-fault DURATION=<s> SEED=<n>; keeps the
# history and logs of a failing run in build/fault/<stamp>/.
DURATION ?= 600
SEED     ?=
FAULT_BEACOND ?= $(BS)/beacond
fault-short: deps $(BS)/beacond
	BEACOND=$(CURDIR)/$(BS)/beacond /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/fault

test-fault: deps $(FAULT_BEACOND)
	BEACOND=$(CURDIR)/$(FAULT_BEACOND) /usr/bin/python3 tests/fault/run.py --duration $(DURATION) $(if $(SEED),--seed $(SEED))

# ---- style and structure ------------------------------------------------------
SRC_ALL := $(shell find common server raft kv health dns client tests -name '*.[ch]' 2>/dev/null)

format:
	clang-format -i $(SRC_ALL)

format-check:
	@clang-format --dry-run --Werror $(SRC_ALL)

# Dependencies point one way (STYLE.md §1).
check-deps:
	@bad=$$(grep -lE '#include <uv\.h>' $$(find common kv health dns -name '*.[ch]' ! -name '*_io.c') 2>/dev/null); \
	 bad="$$bad $$(grep -lE '#include <microhttpd\.h>' $$(find common kv health dns raft -name '*.[ch]') 2>/dev/null)"; \
	 bad="$$bad $$(grep -lE '#include <raft\.h>|#include <raft/' $$(find common kv health dns server -name '*.[ch]') 2>/dev/null)"; \
	 bad="$$bad $$(grep -lE '#include "(server|raft|health|dns)/' $$(find common kv -name '*.[ch]') 2>/dev/null)"; \
	 bad="$$bad $$(grep -lE '#include <(uv|microhttpd|raft|sqlite3)\.h>|#include "(server|raft|kv|health|dns)/' $$(find client -name '*.[ch]') 2>/dev/null)"; \
	 bad="$$bad $$(grep -lE '#include "client/' $$(find common server raft kv health dns -name '*.[ch]') 2>/dev/null)"; \
	 bad=$$(echo $$bad); if [ -n "$$bad" ]; then echo "check-deps: forbidden include in: $$bad"; exit 1; fi

check-headers:
	@set -e; for h in $$(find common server raft kv health dns client -name '*.h'); do \
	  echo "#include \"$$h\"" | $(CC) $(filter-out -MMD -MP,$(CPPFLAGS)) $(PKG_CFLAGS) $(WARN) -x c -fsyntax-only - ; done

test check: deps format-check check-deps check-headers unit fuzz-replay integration fault-short
	@echo "make test: all suites passed"

bench: all
	bash bench/compare.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

# Keep intermediate objects (test and fuzz .o files) between runs.
.SECONDARY:

# ---- install: make install [PREFIX=/usr/local] [DESTDIR=staging dir] ---------
# beacond, its systemd units (their paths follow PREFIX), the backup script,
# the environment example and the beacond(8) page made from `beacond --help`.
PREFIX ?= /usr/local
INST   := $(B)/install

install: all
	@mkdir -p $(INST)
	sh deploy/make-man.sh $(B)/beacond > $(INST)/beacond.8
	sed 's|^ExecStart=/usr/local/|ExecStart=$(PREFIX)/|' \
	    deploy/systemd/beacond.service > $(INST)/beacond.service
	sed 's|^ExecStart=/usr/local/|ExecStart=$(PREFIX)/|' \
	    deploy/systemd/beacon-backup.service > $(INST)/beacon-backup.service
	install -D -m 0755 $(B)/beacond $(DESTDIR)$(PREFIX)/bin/beacond
	install -D -m 0644 $(INST)/beacond.service \
	    $(DESTDIR)$(PREFIX)/lib/systemd/system/beacond.service
	install -D -m 0644 $(INST)/beacon-backup.service \
	    $(DESTDIR)$(PREFIX)/lib/systemd/system/beacon-backup.service
	install -D -m 0644 deploy/systemd/beacon-backup.timer \
	    $(DESTDIR)$(PREFIX)/lib/systemd/system/beacon-backup.timer
	install -D -m 0755 deploy/systemd/beacon-backup.sh \
	    $(DESTDIR)$(PREFIX)/libexec/beacon/beacon-backup
	install -D -m 0644 deploy/systemd/beacond.env.example \
	    $(DESTDIR)$(PREFIX)/share/doc/beacon/beacond.env.example
	install -D -m 0644 $(INST)/beacond.8 \
	    $(DESTDIR)$(PREFIX)/share/man/man8/beacond.8

# libbeacon, its header and pkg-config file, and the beacon CLI.
install: install-client
install-client: all
	@mkdir -p $(INST)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(BEACON_VERSION)|' \
	    client/beacon.pc.in > $(INST)/beacon.pc
	install -D -m 0755 $(B)/beacon $(DESTDIR)$(PREFIX)/bin/beacon
	install -D -m 0644 client/beacon.h $(DESTDIR)$(PREFIX)/include/beacon.h
	install -D -m 0644 $(B)/libbeacon.a $(DESTDIR)$(PREFIX)/lib/libbeacon.a
	install -D -m 0755 $(B)/libbeacon.so \
	    $(DESTDIR)$(PREFIX)/lib/libbeacon.so.$(BEACON_VERSION)
	ln -sf libbeacon.so.$(BEACON_VERSION) $(DESTDIR)$(PREFIX)/lib/libbeacon.so.0
	ln -sf libbeacon.so.0 $(DESTDIR)$(PREFIX)/lib/libbeacon.so
	install -D -m 0644 $(INST)/beacon.pc \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig/beacon.pc
