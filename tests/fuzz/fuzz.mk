# tests/fuzz/fuzz.mk: libFuzzer targets (included by the Makefile).
#
#   make fuzz [FUZZ_TIME=seconds]   fuzz each target for FUZZ_TIME (default 60)
#   make fuzz-check                 replay seeds and regressions, then a few
#                                   seconds of fuzzing each (part of make check)
#
# Each target links the src/ file it tests, built here with ASan, UBSan and
# the fuzzer's coverage instrumentation; src/*.o are not touched.  New
# inputs go to build/fuzz/corpus/<target>/, crashes to build/fuzz/; the
# committed seeds (tests/fuzz/<target>/seed/) are only read.  A crash worth
# keeping is copied into tests/fuzz/<target>/regress/.  A target's own
# libFuzzer options, if it needs any, are in tests/fuzz/<target>.options.

FUZZ_CC		?= clang-14
FUZZ_TIME	?= 60
FUZZ_CHECK_TIME	?= 4
# seconds one input may take before it counts as a failure
FUZZ_TIMEOUT	?= 10
FUZZ_TARGETS	= addr data conf alias getline bdat session milter proxy
FUZZ_DIR	= build/fuzz
FUZZ_CFLAGS	= -std=c11 -D_GNU_SOURCE -DLIBBSD_OPENBSD_VIS -DVERSION='"fuzz"' $(DEP_CFLAGS) -Isrc \
		  $(WARN) -g -O1 -fno-omit-frame-pointer \
		  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

# What each target links from src/.
FUZZ_SRC_addr	 = src/addr.c
FUZZ_SRC_bdat	 = src/addr.c
FUZZ_SRC_data	 = src/data.c
FUZZ_SRC_conf	 = src/conf.c src/addr.c
FUZZ_SRC_getline = src/io.c
FUZZ_SRC_proxy	 = src/proxy.c src/io.c
FUZZ_SRC_alias	 = src/route.c src/addr.c src/log.c src/maildir.c src/sd.c
# The whole session: everything but main() and TLS (tls.h's stubs stand in).
FUZZ_SRC_session = $(filter-out src/main.c src/tls.c,$(SRCS))
# Its log goes nowhere and the process title is left alone (fuzz_session.c).
FUZZ_LDFLAGS_session = -Wl,--wrap=log_msg,--wrap=setproctitle
FUZZ_SRC_milter	 = src/milter.c src/verdict.c src/edit.c src/maildir.c src/log.c src/sd.c src/io.c

FUZZ_BINS = $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)

$(FUZZ_DIR)/.dir:
	mkdir -p $(FUZZ_DIR)
	echo '*' > build/.gitignore
	touch $@

.SECONDEXPANSION:
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $$(FUZZ_SRC_$$*) $(HDRS) $(FUZZ_DIR)/.dir
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_LDFLAGS_$*) -o $@ $< $(FUZZ_SRC_$*) $(DEP_LIBS) -ldl

fuzz-build: $(FUZZ_BINS)

# -runs=0 replays every file in the corpus directories once and stops.
fuzz-check: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/check-$$t && \
		echo "fuzz $$t: replaying seeds and regressions" && \
		$(FUZZ_DIR)/fuzz_$$t -runs=0 -timeout=$(FUZZ_TIMEOUT) $(FUZZ_DIR)/check-$$t tests/fuzz/$$t/seed \
			$$(test -d tests/fuzz/$$t/regress && echo tests/fuzz/$$t/regress) \
			2>$(FUZZ_DIR)/replay-$$t.log || \
			{ tail -n 40 $(FUZZ_DIR)/replay-$$t.log; exit 1; }; \
		echo "fuzz $$t: $(FUZZ_CHECK_TIME) s" && \
		nice -n 10 $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_CHECK_TIME) -timeout=$(FUZZ_TIMEOUT) \
			$$(cat tests/fuzz/$$t.options 2>/dev/null) -dict=tests/fuzz/$$t.dict -artifact_prefix=$(FUZZ_DIR)/crash-$$t- \
			$(FUZZ_DIR)/corpus/$$t tests/fuzz/$$t/seed \
			2>$(FUZZ_DIR)/check-$$t.log || \
			{ tail -n 40 $(FUZZ_DIR)/check-$$t.log; exit 1; }; \
	done

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t && \
		echo "fuzz $$t: $(FUZZ_TIME) s" && \
		nice -n 10 $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_TIME) -timeout=$(FUZZ_TIMEOUT) \
			-print_final_stats=1 $$(cat tests/fuzz/$$t.options 2>/dev/null) \
			-dict=tests/fuzz/$$t.dict -artifact_prefix=$(FUZZ_DIR)/crash-$$t- \
			$(FUZZ_DIR)/corpus/$$t tests/fuzz/$$t/seed || exit 1; \
	done

.PHONY: fuzz fuzz-build fuzz-check
