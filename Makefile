# lunamq — one non-recursive Makefile. `make V=1` shows the commands.
# make deps | all | run | test | fuzz | bench | clean | install | deb | format | format-check | check-headers

B       ?= build
PREFIX  ?= /usr/local
DESTDIR ?=
Q       := $(if $(V),,@)
CC      ?= cc

WARN := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -Wshadow \
        -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings -Wformat=2 \
        -Wundef -Wvla -Wimplicit-fallthrough -Wcast-qual -fno-common
OPT    ?= -O2 -g
# Debian's hardening (lintian asks for both): bounds-checked libc calls, read-only GOT
HARDEN := -D_FORTIFY_SOURCE=2
HARDEN_LD := -Wl,-z,relro,-z,now
CFLAGS ?=
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

ifeq ($(SAN),1)
  B := build/san
  OPT := -O1 -g
  HARDEN :=
  HARDEN_LD :=
  # LUNAMQ_CHECKS: the persistence ordering check (no ack before its records are durable)
  EXTRA := $(SANFLAGS) -DLUNAMQ_CHECKS
endif

# mbedTLS 3.6: our own build or the packaged one, as `make deps` chose (tools/deps.sh);
# MBEDTLS_MK=build/deps/mbedtls-packaged.mk builds with the packaged one. Objects depend
# on the choice: the two have different structure layouts.
MBEDTLS_MK ?= build/deps/mbedtls.mk
-include $(MBEDTLS_MK)
MBEDTLS_CFLAGS ?=
MBEDTLS_LIBS   ?= -lmbedtls -lmbedx509 -lmbedcrypto
# Lua 5.4 and Debian's lua-cjson (a shared module without a -dev link name)
LUA_CFLAGS := $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
LUA_LIBS   := $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4) \
              $(firstword $(wildcard /usr/lib/*/liblua5.4-cjson.so.0) -llua5.4-cjson)
NATS_LIBS  := $(shell pkg-config --libs libnats 2>/dev/null || echo -lnats)
CURL_LIBS  := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
LIBS       := -levent_core -levent $(MBEDTLS_LIBS) $(LUA_LIBS) $(NATS_LIBS) $(CURL_LIBS) -lpthread -lm
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)

SRC      := $(wildcard broker/*/*.c)
LIB_OBJ  := $(SRC:broker/%.c=$(B)/obj/%.o) $(B)/obj/http/dashboard.o
MAIN_OBJ := $(B)/obj/main.o
UNIT_SRC := $(wildcard test/unit/*.c)
UNIT_OBJ := $(UNIT_SRC:test/unit/%.c=$(B)/obj/test/%.o)

.PHONY: all deps run test unit e2e fuzz bench tls-packaged clean install deb pkg-test format format-check \
        check-headers san

all: $(B)/lunamq $(B)/lunamq-ctl $(B)/lunamq-bench

# the codecs earn the strict flag: length arithmetic is the attack surface
$(B)/obj/mqtt/%.o: WARN += -Wconversion
$(B)/obj/ws/frame.o: WARN += -Wconversion

$(B)/obj/%.o: broker/%.c $(wildcard $(MBEDTLS_MK))
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(WARN) $(OPT) $(HARDEN) $(EXTRA) $(CFLAGS) $(MBEDTLS_CFLAGS) $(LUA_CFLAGS) -Iinclude -MMD -MP -c $< -o $@

$(B)/obj/test/%.o: test/unit/%.c $(wildcard $(MBEDTLS_MK))
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(WARN) -Wno-missing-prototypes $(OPT) $(EXTRA) $(CFLAGS) $(MBEDTLS_CFLAGS) $(LUA_CFLAGS) -Iinclude -MMD -MP -c $< -o $@

# the dashboard page, built into the binary (.incbin)
$(B)/obj/http/dashboard.o: broker/http/dashboard.S broker/http/dashboard.html
	@mkdir -p $(@D)
	$(Q)$(CC) -c $< -o $@

$(B)/liblunamq.a: $(LIB_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/lunamq: $(MAIN_OBJ) $(B)/liblunamq.a
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(EXTRA) $(HARDEN_LD) -o $@ $^ $(LIBS)

$(B)/lunamq-ctl: $(B)/obj/ctl.o $(B)/liblunamq.a
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(EXTRA) $(HARDEN_LD) -o $@ $^ $(LIBS)

$(B)/obj/bench/%.o: bench/%.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(WARN) $(OPT) $(EXTRA) $(CFLAGS) -Iinclude -MMD -MP -c $< -o $@

$(B)/lunamq-bench: $(B)/obj/bench/lunamq-bench.o $(B)/liblunamq.a
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(EXTRA) -o $@ $^ $(LIBS)

# libnats alone, per message (not part of `all`): build/lunamq-natscost URL
$(B)/lunamq-natscost: $(B)/obj/bench/natscost.o
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(EXTRA) -o $@ $^ $(NATS_LIBS) -lpthread

# hooks_run alone, without a broker (not part of `all`): build/lunamq-hookbench
$(B)/lunamq-hookbench: $(B)/obj/bench/hookbench.o $(B)/liblunamq.a
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(EXTRA) -o $@ $^ $(LIBS)

$(B)/unit: $(UNIT_OBJ) $(B)/liblunamq.a
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(EXTRA) -o $@ $^ $(CHECK_LIBS) $(LIBS)

-include $(LIB_OBJ:.o=.d) $(MAIN_OBJ:.o=.d) $(B)/obj/ctl.d $(B)/obj/bench/lunamq-bench.d \
         $(UNIT_OBJ:.o=.d)

# ---- set-up ----
deps:
	$(Q)tools/deps.sh

run: deps all
	./$(B)/lunamq -c examples/lunamq.conf

# ---- tests: units in the normal and the sanitizer build, then end to end in both ----
unit: $(B)/unit
	$(Q)./$(B)/unit

san:
	$(Q)$(MAKE) --no-print-directory SAN=1 build/san/lunamq build/san/lunamq-ctl build/san/lunamq-bench build/san/unit

e2e: $(B)/lunamq $(B)/lunamq-ctl $(B)/lunamq-bench
	$(Q)LUNAMQ_BIN=$(B)/lunamq /usr/bin/python3 test/e2e/run.py

test: deps
	$(Q)$(MAKE) --no-print-directory check-headers
	$(Q)$(MAKE) --no-print-directory all build/unit
	$(Q)./build/unit
	$(Q)$(MAKE) --no-print-directory san
	$(Q)ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./build/san/unit
	$(Q)LUNAMQ_BIN=build/lunamq /usr/bin/python3 test/e2e/run.py -j 2
	$(Q)LUNAMQ_BIN=build/san/lunamq LUNAMQ_SAN=1 /usr/bin/python3 test/e2e/run.py -j 2
	$(Q)$(MAKE) --no-print-directory tls-packaged
	$(Q)$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20
	$(Q)$(MAKE) --no-print-directory pkg-test

# the TLS tests once more with the packaged mbedTLS, the fallback of make deps
tls-packaged:
	$(Q)$(MAKE) --no-print-directory B=build/pkg MBEDTLS_MK=build/deps/mbedtls-packaged.mk \
	    build/pkg/lunamq build/pkg/lunamq-ctl build/pkg/lunamq-bench
	$(Q)LUNAMQ_BIN=build/pkg/lunamq /usr/bin/python3 test/e2e/run.py 15-tls 24-storm 25-tls

# ---- fuzzing: libFuzzer over the packet codec, one client session per input ----
# Prints the fuzzer's first and last status lines; on a failure the end of its log
# (the crash and its input under $(B)/fuzz-artifacts/), and exits with its status.
FUZZ_SECONDS ?= 60
MQTT_SRC := $(wildcard broker/mqtt/*.c) broker/core/alloc.c
$(B)/fuzz_mqtt_decode: test/fuzz/fuzz_mqtt_decode.c $(MQTT_SRC)
	@mkdir -p $(@D)
	$(Q)clang $(WARN) -Wconversion -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude $^ -o $@

# the journal/snapshot reader (broker/store/record.c) alone
STORE_FUZZ_SRC := broker/store/record.c broker/core/alloc.c
$(B)/fuzz_store_read: test/fuzz/fuzz_store_read.c $(STORE_FUZZ_SRC)
	@mkdir -p $(@D)
	$(Q)clang $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Ibroker/store $^ -o $@

# the HTTP request framer (broker/http/request.c) alone
HTTP_FUZZ_SRC := broker/http/request.c broker/core/alloc.c
$(B)/fuzz_http_request: test/fuzz/fuzz_http_request.c $(HTTP_FUZZ_SRC)
	@mkdir -p $(@D)
	$(Q)clang $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude $^ -o $@

# the WebSocket frame decoder (broker/ws/frame.c) alone: no mbedTLS (handshake.c has it)
WS_FUZZ_SRC := broker/ws/frame.c broker/core/alloc.c
$(B)/fuzz_ws_frame: test/fuzz/fuzz_ws_frame.c $(WS_FUZZ_SRC)
	@mkdir -p $(@D)
	$(Q)clang $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude $^ -o $@

# run_fuzzer NAME SEEDS: FUZZ_SECONDS of NAME, its INITED/DONE lines, its log's end on failure
define run_fuzzer
	@mkdir -p $(B)/fuzz-corpus-$(1) $(B)/fuzz-artifacts
	$(Q)./$(B)/$(1) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -artifact_prefix=$(B)/fuzz-artifacts/ $(B)/fuzz-corpus-$(1) $(2) \
	    >$(B)/$(1).log 2>&1; rc=$$?; \
	grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' $(B)/$(1).log; \
	if [ $$rc -ne 0 ]; then tail -n 40 $(B)/$(1).log; fi; exit $$rc
endef

fuzz: $(B)/fuzz_mqtt_decode $(B)/fuzz_store_read $(B)/fuzz_http_request $(B)/fuzz_ws_frame
	$(call run_fuzzer,fuzz_mqtt_decode,test/fuzz/corpus)
	$(call run_fuzzer,fuzz_store_read,test/fuzz/corpus-store)
	$(call run_fuzzer,fuzz_http_request,test/fuzz/corpus-http)
	$(call run_fuzzer,fuzz_ws_frame,test/fuzz/corpus-ws)

# ---- benchmarks against Debian's mosquitto (figures go to bench/RESULTS.md by hand) ----
# lunamq against Debian's mosquitto; rewrites the generated part of bench/RESULTS.md
bench: deps all $(B)/lunamq-natscost
	$(Q)/usr/bin/python3 bench/update_results.py

# ---- housekeeping ----
# the broker in sbin (a daemon), lunamq-ctl in bin, the man pages by the section in their name
MAN_PAGES := $(wildcard man/*.[1-8])
install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/lunamq
	install -m 0755 $(B)/lunamq $(DESTDIR)$(PREFIX)/sbin/lunamq
	install -m 0755 $(B)/lunamq-ctl $(DESTDIR)$(PREFIX)/bin/lunamq-ctl
	install -m 0644 examples/lunamq.conf $(DESTDIR)$(PREFIX)/share/lunamq/lunamq.conf.example
	$(Q)for m in $(MAN_PAGES); do \
	    d=$(DESTDIR)$(PREFIX)/share/man/man$${m##*.}; \
	    echo "install -m 0644 $$m $$d"; install -d $$d && install -m 0644 $$m $$d || exit 1; \
	done

# ---- the Debian package (debian/) ----
# build/lunamq_VERSION_ARCH.deb (and its .buildinfo, .changes, -dbgsym .deb) from the objects
# of `make all`: debian/rules calls this Makefile. dpkg-buildpackage writes to the parent
# directory unless told otherwise; its output is in build/deb.log.
deb: deps
	$(Q)v=$$(dpkg-parsechangelog -S Version) && a=$$(dpkg-architecture -q DEB_HOST_ARCH) && \
	echo "  DEB   build/lunamq_$${v}_$$a.deb" && \
	DEB_BUILD_OPTIONS="nocheck parallel=$$(nproc) $$DEB_BUILD_OPTIONS" LUNAMQ_DEB_DIR=build \
	dpkg-buildpackage -us -uc -b \
	    --buildinfo-option=-ubuild --buildinfo-file=build/lunamq_$${v}_$$a.buildinfo \
	    --changes-option=-ubuild --changes-file=build/lunamq_$${v}_$$a.changes \
	    >build/deb.log 2>&1 || { tail -n 40 build/deb.log; exit 1; }

# the package built, linted, installed here, checked, run and purged (as root)
pkg-test:
	$(Q)test/pkg/run.sh

clean:
	rm -rf build/obj build/san build/pkg build/lunamq build/lunamq-ctl build/unit build/liblunamq.a \
	    build/fuzz_mqtt_decode build/fuzz_store_read build/fuzz_http_request build/fuzz_ws_frame \
	    build/lunamq_* \
	    build/lunamq-dbgsym_* build/deb.log

FMT_FILES := $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FMT_FILES)

format-check:
	clang-format --dry-run --Werror $(FMT_FILES)

check-headers:
	$(Q)for h in include/*.h; do \
	    echo "#include \"$$(basename $$h)\"" | $(CC) $(WARN) -Iinclude -x c -fsyntax-only - || exit 1; \
	done; echo "headers: each compiles alone"
