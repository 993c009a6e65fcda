# mailslot: make, make check, make deps, make clean.
# See README for the rest.

PROG	= src/mailslot
SRCS	= src/main.c src/conf.c src/smtp.c src/addr.c src/io.c src/data.c \
	  src/route.c src/deliver.c \
	  src/maildir.c src/log.c src/sd.c
OBJS	= $(SRCS:.c=.o)
HDRS	= $(wildcard src/*.h)

VERSION	= 0.1
CC	?= cc
PKG_CONFIG ?= pkg-config

CFLAGS	?= -O2 -g
WARN	= -Wall -Wextra -Wformat=2 -Wshadow -Wpointer-arith -Wstrict-prototypes
HARDEN	= -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
HARDLD	= -pie -Wl,-z,relro,-z,now
# libsystemd: headers only; the library is dlopen()ed on first use (src/sd.h).
DEP_CFLAGS = $(shell $(PKG_CONFIG) --cflags libbsd-overlay libsystemd 2>/dev/null)
DEP_LIBS   = $(shell $(PKG_CONFIG) --libs libbsd-overlay 2>/dev/null)
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -DLIBBSD_OPENBSD_VIS -DVERSION='"$(VERSION)"' $(DEP_CFLAGS) $(TLS_CFLAGS) \
	     $(WARN) $(HARDEN) $(CFLAGS) $(CPPFLAGS)
ALL_LDFLAGS = $(HARDLD) $(LDFLAGS)

# Debian packages that building and testing need.
BUILD_DEPS = gcc make pkg-config libbsd-dev libsystemd-dev
TEST_DEPS  = bats bats-assert bats-support python3 systemd openssl swaks libnet-ssleay-perl

# STARTTLS through libtls (src/tls.c); `make TLS=no` builds without it.
TLS	?= yes
ifeq ($(TLS),yes)
SRCS	+= src/tls.c
TLS_CFLAGS = -DMAILSLOT_TLS $(shell $(PKG_CONFIG) --cflags libtls 2>/dev/null)
TLS_LIBS   = $(shell $(PKG_CONFIG) --libs libtls 2>/dev/null || echo -ltls)
BUILD_DEPS += libtls-dev
endif

all: $(PROG)

$(PROG): $(OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(DEP_LIBS) $(TLS_LIBS) -ldl

src/%.o: src/%.c $(HDRS) build/tls-$(TLS)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Changing TLS= rebuilds every object: main.c and smtp.c compile differently.
build/tls-$(TLS):
	@mkdir -p build && rm -f build/tls-* && touch $@
	@test -f build/.gitignore || echo '*' > build/.gitignore

# Install what is missing (as root, with apt-get); nothing when all is there.
deps:
	@missing=$$(for p in $(BUILD_DEPS) $(TEST_DEPS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

check: deps
	$(MAKE) all
	bats --print-output-on-failure tests

clean:
	rm -f $(PROG) $(OBJS)

.PHONY: all deps check clean

# The benchmark (bench/, BENCHMARKS.md), not part of check: make bench,
# or make bench BENCH_QUICK=1 for small N.  Needs systemd and valgrind.
BENCH_PROGS  = bench/smtpload bench/floor bench/rsswrap
BENCH_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(HARDEN) $(CFLAGS) $(CPPFLAGS)

bench/smtpload: bench/smtpload.c
	$(CC) $(BENCH_CFLAGS) $(ALL_LDFLAGS) -o $@ $< -lpthread

bench/floor bench/rsswrap: bench/%: bench/%.c
	$(CC) $(BENCH_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

bench: $(PROG) $(BENCH_PROGS)
	BENCH_QUICK='$(BENCH_QUICK)' sh bench/bench.sh

.PHONY: bench

include tests/fuzz/fuzz.mk
