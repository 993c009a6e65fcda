# mailslot: make, make check, make deps, make clean.
# See README for the rest.

PROG	= src/mailslot
SRCS	= src/main.c src/conf.c src/smtp.c src/addr.c src/io.c src/data.c \
	  src/route.c src/deliver.c src/header.c src/verdict.c src/edit.c src/filter.c src/milter.c \
	  src/maildir.c src/fsync.c src/log.c src/sd.c src/proxy.c
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
# libbsd is linked statically (LIBBSD=static, the default): mailslot is
# exec'ed once per connection, and as a shared library libbsd (with libmd
# behind it) cost every start two more libraries to map and bind, about
# 0.2 million instructions, for the few small functions mailslot takes from
# it.  LIBBSD=shared links libbsd.so as usual.
LIBBSD	?= static
BSD_LIBS   = $(shell $(PKG_CONFIG) --libs libbsd-overlay 2>/dev/null)
BSD_STATIC = -lc -Wl,-Bstatic $(BSD_LIBS) -Wl,-Bdynamic
DEP_LIBS   = $(if $(filter static,$(LIBBSD)),$(BSD_STATIC),$(BSD_LIBS))
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -DLIBBSD_OPENBSD_VIS -DVERSION='"$(VERSION)"' $(DEP_CFLAGS) $(TLS_CFLAGS) \
	     $(WARN) $(HARDEN) $(CFLAGS) $(CPPFLAGS)
ALL_LDFLAGS = $(HARDLD) $(LDFLAGS)

# Debian packages that building and testing need, every one named: apt-get
# runs with --no-install-recommends, and gcc only recommends the C library's
# headers (libc6-dev) and those of the kernel (linux-libc-dev) behind them.
# procps: kill and pgrep in tests/lib.  tests/fresh-machine.sh checks the
# lists on a minimal Debian 12.
BUILD_DEPS = gcc libc6-dev linux-libc-dev make pkg-config libbsd-dev libsystemd-dev
TEST_DEPS  = bats bats-assert bats-support python3 systemd openssl swaks libnet-ssleay-perl \
	     procps
# tests/milter*.bats: test milters (pymilter), rspamd, OpenDKIM.
TEST_DEPS += python3-milter rspamd opendkim opendkim-tools

# STARTTLS through libtls (src/tls.c); `make TLS=no` builds without it.
# The choice sticks (build/tls-*) until TLS= is given again or make clean,
# so a later plain make (make run, make install) keeps it.
TLS	?= $(if $(wildcard build/tls-no),no,yes)
ifeq ($(TLS),yes)
SRCS	+= src/tls.c
# libtls is dlopen()ed on STARTTLS (src/tls.c): headers and its soname only.
TLS_SONAME := $(shell objdump -p "$$($(PKG_CONFIG) --variable=libdir libtls 2>/dev/null)/libtls.so" 2>/dev/null | awk '/SONAME/ { print $$2 }')
TLS_CFLAGS = -DMAILSLOT_TLS -DLIBTLS_SONAME='"$(or $(TLS_SONAME),libtls.so.26)"' \
	     $(shell $(PKG_CONFIG) --cflags libtls 2>/dev/null)
TLS_LIBS   =
BUILD_DEPS += libtls-dev
endif

all: $(PROG)

# What each session maps of the program (BENCHMARKS.md, "Peak RSS"):
# src/rooms.ld puts the filters', PROXY's and TLS's code in a mapping of its
# own, which a session without them never faults in; pack-relative-relocs
# (DT_RELR, glibc 2.36) shrinks the relocations ld.so reads at every start
# from 7 KiB to a few hundred bytes.
LAYOUT_LD = -Wl,-T,src/rooms.ld -Wl,-z,pack-relative-relocs
$(PROG): $(OBJS) src/rooms.ld
	$(CC) $(ALL_LDFLAGS) $(LAYOUT_LD) -o $@ $(OBJS) $(DEP_LIBS) $(TLS_LIBS) -ldl

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
	$(MAKE) lint-man
	bats --print-output-on-failure tests
	$(MAKE) check-asan check-valgrind fuzz-check

clean:
	rm -f $(PROG) $(OBJS) src/tls.o build/tls-*

.PHONY: all deps check clean

# tests/deploy-*.bats: launchers, real clients, Dovecot, the man pages;
# netbase: /etc/services and /etc/protocols, where inetd and xinetd look up
# "smtp" and "tcp" (minbase has neither).
TEST_DEPS += swaks msmtp curl ucspi-tcp openbsd-inetd execline s6 \
	     dovecot-imapd mandoc man-db strace iproute2 util-linux netbase

# tests/recipients-*.bats: dovecot-lda (maildirsize as Dovecot writes it),
# strace (fault injection), utmpdump and setpriv (util-linux).
TEST_DEPS += dovecot-core strace util-linux

# tests/filter-command.bats: SpamAssassin's spamd and spamc.
TEST_DEPS += spamassassin spamc spamd

# tests/proxy-haproxy.bats: two mailslot hosts behind a real HAProxy.
TEST_DEPS += haproxy

# tests/lmtp-postfix.bats: a private Postfix instance as the LMTP client.
# The package is an MTA: on a machine that has another (exim4), apt-get
# replaces it.
TEST_DEPS += postfix

# Installation.  No root needed with DESTDIR (a staging tree).  The binary
# reads /etc/mailslot/mailslot.conf by default; with another SYSCONFDIR the
# installed service passes -f.
PREFIX	= /usr/local
SBINDIR	= $(PREFIX)/sbin
MANDIR	= $(PREFIX)/share/man
DOCDIR	= $(PREFIX)/share/doc/mailslot
SYSCONFDIR = /etc
SYSTEMDUNITDIR = $(PREFIX)/lib/systemd/system
SYSUSERSDIR = $(PREFIX)/lib/sysusers.d
TMPFILESDIR = $(PREFIX)/lib/tmpfiles.d
INSTALL	= install
MANPAGES = man/mailslot.8 man/mailslot.conf.5
CONTRIB	= contrib/README contrib/inetd.conf contrib/xinetd.mailslot contrib/haproxy.cfg
CONF_ARG = $(if $(filter /etc,$(SYSCONFDIR)),, -f $(SYSCONFDIR)/mailslot/mailslot.conf)

install: all
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR) \
	    $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/mailslot $(DESTDIR)$(DOCDIR)/contrib/tcpserver \
	    $(DESTDIR)$(DOCDIR)/contrib/s6 $(DESTDIR)$(DOCDIR)/contrib/tcpserver-lmtp
	$(INSTALL) -m 755 $(PROG) $(DESTDIR)$(SBINDIR)/mailslot
	$(INSTALL) -m 644 man/mailslot.8 $(DESTDIR)$(MANDIR)/man8/mailslot.8
	$(INSTALL) -m 644 man/mailslot.conf.5 $(DESTDIR)$(MANDIR)/man5/mailslot.conf.5
	$(INSTALL) -m 644 units/mailslot.socket $(DESTDIR)$(SYSTEMDUNITDIR)/mailslot.socket
	sed 's|^ExecStart=/usr/sbin/mailslot$$|ExecStart=$(SBINDIR)/mailslot$(CONF_ARG)|' \
	    units/mailslot@.service >$(DESTDIR)$(SYSTEMDUNITDIR)/mailslot@.service
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/mailslot@.service
	$(INSTALL) -m 644 units/mailslot-lmtp.socket $(DESTDIR)$(SYSTEMDUNITDIR)/mailslot-lmtp.socket
	sed 's|^ExecStart=/usr/sbin/mailslot |ExecStart=$(SBINDIR)/mailslot$(CONF_ARG) |' \
	    units/mailslot-lmtp@.service >$(DESTDIR)$(SYSTEMDUNITDIR)/mailslot-lmtp@.service
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/mailslot-lmtp@.service
	$(INSTALL) -m 644 units/mailslot.sysusers $(DESTDIR)$(SYSUSERSDIR)/mailslot.conf
	$(INSTALL) -m 644 units/mailslot.tmpfiles $(DESTDIR)$(TMPFILESDIR)/mailslot.conf
	@# An existing configuration is the administrator's: never overwritten.
	test -e $(DESTDIR)$(SYSCONFDIR)/mailslot/mailslot.conf || \
	    $(INSTALL) -m 644 etc/mailslot.conf $(DESTDIR)$(SYSCONFDIR)/mailslot/mailslot.conf
	$(INSTALL) -m 644 README $(DESTDIR)$(DOCDIR)/README
	$(INSTALL) -m 644 $(CONTRIB) $(DESTDIR)$(DOCDIR)/contrib/
	$(INSTALL) -m 755 contrib/tcpserver/run contrib/tcpserver/log-run \
	    $(DESTDIR)$(DOCDIR)/contrib/tcpserver/
	$(INSTALL) -m 755 contrib/s6/run $(DESTDIR)$(DOCDIR)/contrib/s6/
	$(INSTALL) -m 755 contrib/tcpserver-lmtp/run $(DESTDIR)$(DOCDIR)/contrib/tcpserver-lmtp/
	$(INSTALL) -m 755 contrib/mailslot-spamc $(DESTDIR)$(DOCDIR)/contrib/
	@if [ -z "$(DESTDIR)" ]; then \
		echo "next: systemd-sysusers; systemd-tmpfiles --create;" \
		    "systemctl daemon-reload; systemctl enable --now mailslot.socket"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/mailslot \
	    $(DESTDIR)$(MANDIR)/man8/mailslot.8 $(DESTDIR)$(MANDIR)/man5/mailslot.conf.5 \
	    $(DESTDIR)$(SYSTEMDUNITDIR)/mailslot.socket \
	    $(DESTDIR)$(SYSTEMDUNITDIR)/mailslot@.service \
	    $(DESTDIR)$(SYSTEMDUNITDIR)/mailslot-lmtp.socket \
	    $(DESTDIR)$(SYSTEMDUNITDIR)/mailslot-lmtp@.service \
	    $(DESTDIR)$(SYSUSERSDIR)/mailslot.conf $(DESTDIR)$(TMPFILESDIR)/mailslot.conf
	rm -rf $(DESTDIR)$(DOCDIR)
	@# The configuration goes only when it is still the example.
	if cmp -s etc/mailslot.conf $(DESTDIR)$(SYSCONFDIR)/mailslot/mailslot.conf; then \
		rm -f $(DESTDIR)$(SYSCONFDIR)/mailslot/mailslot.conf; \
		rmdir $(DESTDIR)$(SYSCONFDIR)/mailslot 2>/dev/null || true; \
	fi

# Every message mandoc -Tlint has, style included, fails the lint; but
# whether an Xr target is installed depends on the machine, not the page.
lint-man:
	@out=$$(mandoc -Tlint -Wstyle $(MANPAGES) 2>&1 | \
	    grep -v -e 'referenced manual not found' -e 'outdated mandoc.db'); \
	if [ -n "$$out" ]; then printf '%s\n' "$$out"; exit 1; fi

# The demo: mailslot on 127.0.0.1:$(RUN_PORT) under systemd-socket-activate,
# delivering into $(RUN_DIR)/Maildir.  Installs what it needs first.
# Started as root, it runs mailslot as $(RUN_USER), which gets $(RUN_DIR).
RUN_PORT = 2525
RUN_DIR	= $(CURDIR)/demo
RUN_USER = mailslot
RUN_DEPS = systemd swaks curl python3

run:
	@$(MAKE) -s deps TEST_DEPS='$(RUN_DEPS)'
	@$(MAKE) -s all
	@sh contrib/demo.sh '$(CURDIR)/$(PROG)' '$(CURDIR)/etc/mailslot.conf' \
	    '$(RUN_PORT)' '$(RUN_DIR)' '$(RUN_USER)'

.PHONY: install uninstall lint-man run

# The benchmark (bench/, BENCHMARKS.md), not part of check: make bench,
# or make bench BENCH_QUICK=1 for small N.  Needs systemd and valgrind.
BENCH_PROGS  = bench/smtpload bench/floor bench/rsswrap bench/noopmilter
BENCH_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(HARDEN) $(CFLAGS) $(CPPFLAGS)

bench/smtpload bench/noopmilter: bench/%: bench/%.c
	$(CC) $(BENCH_CFLAGS) $(ALL_LDFLAGS) -o $@ $< -lpthread

bench/floor bench/rsswrap: bench/%: bench/%.c
	$(CC) $(BENCH_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

bench: $(PROG) $(BENCH_PROGS)
	BENCH_QUICK='$(BENCH_QUICK)' sh bench/bench.sh

# Where the instructions, system calls and time go (bench/profile.sh).
bench-profile: $(PROG) $(BENCH_PROGS)
	sh bench/profile.sh

.PHONY: bench bench-profile

# Sanitizers and valgrind, both part of check (see SECURITY.md); the
# fuzz targets (tests/fuzz/fuzz.mk) need clang and its runtime too.
TEST_DEPS += clang-14 libclang-rt-14-dev valgrind strace

# check-asan: the whole suite against build/asan/mailslot (ASan + UBSan);
# the runtime writes any report under build/asan/reports/, which must stay
# empty (the options travel in the environment and, since launchers such
# as systemd-socket-activate pass none, in MAILSLOT_WRAPPER too).  check-valgrind: the
# protocol tests under memcheck, its reports likewise under build/valgrind/.
ASAN_CC	?= clang-14
ASAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all \
	     -fno-omit-frame-pointer -g -O1
ASAN_OBJS = $(SRCS:src/%.c=build/asan/%.o)
ASAN_VARS = ASAN_OPTIONS=log_path=$(CURDIR)/build/asan/reports/asan:detect_leaks=1:fast_unwind_on_malloc=0 \
	    LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lib/hostile-lsan.supp:print_suppressions=0 \
	    UBSAN_OPTIONS=log_path=$(CURDIR)/build/asan/reports/ubsan:print_stacktrace=1
VALGRIND = valgrind -q --vgdb=no --error-exitcode=1 --leak-check=full \
	   --errors-for-leak-kinds=definite --suppressions=$(CURDIR)/tests/lib/hostile-valgrind.supp \
	   --log-file=$(CURDIR)/build/valgrind/vg.%p
# The protocol tests that valgrind's slowness allows (about 10x): golden
# transcripts, pipelining, line endings, and the limits at their edges.
VALGRIND_TESTS = tests/transcripts.bats tests/pipelining.bats tests/line_endings.bats \
		 tests/hostile-limits.bats

build/asan/mailslot: $(ASAN_OBJS)
	$(ASAN_CC) $(ASAN_FLAGS) $(ALL_LDFLAGS) -o $@ $(ASAN_OBJS) $(DEP_LIBS) $(TLS_LIBS) -ldl

build/asan/%.o: src/%.c $(HDRS) build/tls-$(TLS)
	@mkdir -p build/asan
	$(ASAN_CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -c -o $@ $<

asan: build/asan/mailslot

check-asan: asan
	rm -rf build/asan/reports && mkdir -p build/asan/reports
	@# Sessions run as the suite's account when it runs as root: it must
	@# be able to write its reports.
	chmod 1777 build/asan/reports
	$(ASAN_VARS) MAILSLOT=$(CURDIR)/build/asan/mailslot MAILSLOT_WRAPPER='env $(ASAN_VARS)' \
	    bats --print-output-on-failure tests
	@if [ -n "$$(ls build/asan/reports)" ]; then cat build/asan/reports/*; exit 1; fi

check-valgrind: all
	rm -rf build/valgrind && mkdir -p build/valgrind
	MAILSLOT_WRAPPER='$(VALGRIND)' bats --print-output-on-failure $(VALGRIND_TESTS)
	@if grep -l . build/valgrind/vg.* 2>/dev/null; then cat build/valgrind/vg.*; exit 1; fi

.PHONY: asan check-asan check-valgrind

include tests/fuzz/fuzz.mk

# The crash-state checker (tests/crashcheck/README): make check runs a
# small configuration (tests/crashcheck.bats); this is the long run.
CRASH_STATES ?= 300
crashcheck: $(PROG)
	python3 tests/crashcheck/crashcheck.py --states $(CRASH_STATES) $(if $(CRASH_SEED),--seed $(CRASH_SEED))

.PHONY: crashcheck
