# runbook: build, test, sanitizers, fuzzing, benchmarks, install.
# `make demo` and `make test` install missing Debian packages first (.ci/deps).

PKGS     := yaml-0.1 lua5.4 libcurl openssl jansson libpq hiredis
CC       ?= cc
PREFIX   ?= /usr/local
VERSION  := 0.1.0

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-missing-field-initializers
CFLAGS   ?= -O2 -g
# Headers by name from the engine and the actions; interp/cmd/ is not on the path, so
# only the command layer, beside it, can include cli.h.
INCS     := -Iinterp -Istdlib
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread -DRB_VERSION='"$(VERSION)"' $(WARN) $(INCS) $(PKG_CFLAGS) $(CFLAGS)
# All seven libraries are linked, also those not called yet (--no-as-needed).
LDLIBS   := -Wl,--no-as-needed $(PKG_LIBS) -lm -Wl,--as-needed -pthread

SRCS     := $(wildcard interp/*.c interp/cmd/*.c stdlib/*.c)
# The engine: everything but the command layer (interp/cmd/).
LIB_SRCS := $(filter-out interp/cmd/%.c,$(SRCS))
HDRS     := $(wildcard interp/*.h interp/cmd/*.h stdlib/*.h)

B        := build
OBJS     := $(SRCS:%.c=$(B)/obj/%.o)
ASAN_OBJS:= $(SRCS:%.c=$(B)/asan/%.o)
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

UNIT_SRCS := $(wildcard tests/unit/test_*.c)

.PHONY: all deps demo sandbox test asan valgrind fuzz bench soak-kill install clean schema-check

all: $(B)/runbook

deps:
	@bash .ci/deps

$(B)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/runbook: $(OBJS)
	@echo "LD $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(B)/asan/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	@echo "CC (asan) $<"
	@$(CC) $(filter-out -O2,$(ALL_CFLAGS)) $(ASAN_FLAGS) -c -o $@ $<

$(B)/asan/runbook: $(ASAN_OBJS)
	$(CC) $(ASAN_FLAGS) -o $@ $(ASAN_OBJS) $(LDLIBS)

# Unit tests link the engine's objects.
$(B)/unit/%: tests/unit/%.c $(LIB_SRCS:%.c=$(B)/obj/%.o)
	@mkdir -p $(dir $@)
	@echo "LD $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/asan/unit/%: tests/unit/%.c $(LIB_SRCS:%.c=$(B)/asan/%.o)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -O2,$(ALL_CFLAGS)) $(ASAN_FLAGS) -o $@ $^ $(LDLIBS)

UNITS      := $(UNIT_SRCS:tests/unit/%.c=$(B)/unit/%)
ASAN_UNITS := $(UNIT_SRCS:tests/unit/%.c=$(B)/asan/unit/%)

# The sandbox (runbooks/sandbox/README.md): make demo runs daily-health-check in it
# for real; make sandbox opens a shell in it.  Both stop everything they start.
demo: deps
	@$(MAKE) --no-print-directory all
	@$(B)/runbook validate runbooks/*.yaml
	@runbooks/sandbox/run demo $(B)/runbook

sandbox: deps
	@$(MAKE) --no-print-directory all
	@runbooks/sandbox/run shell

test: deps
	@$(MAKE) --no-print-directory all $(UNITS)
	@bash tests/run $(B)/runbook $(B)/unit

asan: deps
	@$(MAKE) --no-print-directory $(B)/asan/runbook $(ASAN_UNITS) all
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		bash tests/run $(B)/asan/runbook $(B)/asan/unit

valgrind: deps
	@$(MAKE) --no-print-directory all $(UNITS)
	@RUNBOOK_WRAP="bash $(CURDIR)/tests/vg" \
		bash tests/run $(B)/runbook $(B)/unit

# make fuzz: each target for FUZZ_TIME seconds; FUZZ="redact" for one of them.
FUZZ_TIME ?= 60
FUZZ      ?= load redact audit records time args codec review
$(B)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined $(PKG_CFLAGS) \
		$(INCS) -o $@ $< $(LIB_SRCS) $(LDLIBS)

# Each target's dictionary and seed directories, and its corpus (load's predates the
# others).  The corpus comes first on the command line: libFuzzer writes what it
# finds into the first directory, and the seeds are checked in.
FUZZ_DICT_load     := tests/fuzz/runbook.dict
FUZZ_SEEDS_load    := runbooks tests/valid tests/invalid
FUZZ_CORPUS_load   := $(B)/fuzz/corpus
FUZZ_DICT_redact   := tests/fuzz/redact.dict
FUZZ_SEEDS_redact  := tests/fuzz/redact_seeds
FUZZ_DICT_audit    := tests/fuzz/audit.dict
FUZZ_SEEDS_audit   := tests/fuzz/audit
FUZZ_DICT_records  := tests/fuzz/audit.dict
FUZZ_SEEDS_records := tests/fuzz/records
FUZZ_DICT_time     := tests/fuzz/time.dict
FUZZ_SEEDS_time    := tests/fuzz/time_seeds
FUZZ_DICT_args     := tests/fuzz/args.dict
FUZZ_SEEDS_args    := tests/fuzz/args_seeds
FUZZ_DICT_codec    := tests/fuzz/codec.dict
FUZZ_SEEDS_codec   := tests/fuzz/codec_seeds
FUZZ_DICT_review   := tests/fuzz/review.dict
FUZZ_SEEDS_review  := tests/fuzz/review_seeds

fuzz: deps $(FUZZ:%=fuzz-%)

.PRECIOUS: $(B)/fuzz/fuzz_%
# (Pattern rules do not apply to .PHONY targets, so fuzz-NAME is not declared one.)
fuzz-%: $(B)/fuzz/fuzz_%
	@mkdir -p $(or $(FUZZ_CORPUS_$*),$(B)/fuzz/corpus-$*)
	$(B)/fuzz/fuzz_$* -max_total_time=$(FUZZ_TIME) -max_len=65536 -timeout=10 \
		-dict=$(FUZZ_DICT_$*) $(or $(FUZZ_CORPUS_$*),$(B)/fuzz/corpus-$*) $(FUZZ_SEEDS_$*)

bench: deps
	@$(MAKE) --no-print-directory all
	@bash bench/run $(B)/runbook

# The crash test of `make test` (tests/kill.sh) until KILLS kill points were tried.
KILLS ?= 1000
soak-kill: deps
	@$(MAKE) --no-print-directory all
	@RUNBOOK=$(B)/runbook KILLS=$(KILLS) bash tests/kill.sh
	@RUNBOOK=$(B)/runbook PG_CRASH_VISITS=40 NO_COLOR=1 LC_ALL=C TZ=UTC bash tests/pg.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/runbook/schema \
		$(DESTDIR)$(PREFIX)/share/doc/runbook
	install -m 0755 $(B)/runbook $(DESTDIR)$(PREFIX)/bin/runbook
	install -m 0644 schema/runbook.schema.json $(DESTDIR)$(PREFIX)/share/runbook/schema/
	install -m 0644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/runbook/

clean:
	rm -rf $(B)/obj $(B)/asan $(B)/unit $(B)/fuzz $(B)/runbook
