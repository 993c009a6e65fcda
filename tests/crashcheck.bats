#!/usr/bin/env bats
# The crash-state checker (tests/crashcheck/): every 250 survives a crash of
# the machine under the persistence model of tests/crashcheck/README, and
# the checker itself finds a missing directory fsync.

load 'lib/common'

setup() {
	ms_setup
	command -v strace >/dev/null || skip "no strace"
	CC_USER=${MS_USER:-$(id -un)}
	CC_ARGS=(--mailslot "$MAILSLOT" --user "$CC_USER")
	# The named-tmp scenario needs a mount namespace, so root.
	CC_ALL=(--scenario one --scenario ten --scenario quota --scenario bdat --scenario forward
		--scenario lmtp)
	# The milter scenarios need pymilter (the system's python).
	if /usr/bin/python3 -c 'import Milter' 2>/dev/null; then
		CC_ALL+=(--scenario quarantine --scenario filtered)
	fi
	if [ "$(id -u)" = 0 ] && unshare -m --propagation private true 2>/dev/null; then
		CC_ALL+=(--scenario named)
	fi
}

teardown() { ms_teardown; }

@test "crash states: no acknowledged message is lost, partial or doubled" {
	run python3 "$BATS_TEST_DIRNAME/crashcheck/crashcheck.py" "${CC_ARGS[@]}" \
		--states 12 "${CC_ALL[@]}"
	echo "$output"
	[ "$status" -eq 0 ]
	assert_line --regexp '^crashcheck: [0-9]+ crash points, [0-9]+ states checked, 0 with a loss'
	# Every scenario acknowledged what it sent.
	assert_line --regexp '^one: 2 acknowledged \(2 files\)'
	assert_line --regexp '^ten: 1 acknowledged \(10 files\)'
	assert_line --regexp '^forward: 1 acknowledged \(1 files\)'
	assert_line --regexp '^lmtp: 3 acknowledged \(3 files\)'
	if /usr/bin/python3 -c 'import Milter' 2>/dev/null; then
		assert_line --regexp '^quarantine: 1 acknowledged \(2 files\)'
		assert_line --regexp '^filtered: 2 acknowledged \(3 files\)'
	fi
}

@test "crash states: the checker reports the losses of a directory fsync removed" {
	case $MAILSLOT in */asan/*) skip "the ASan runtime must come first: no LD_PRELOAD" ;; esac
	cc -shared -fPIC -O2 -o "$MS_DIR/nodirsync.so" "$BATS_TEST_DIRNAME/crashcheck/nodirsync.c"
	chmod o+rx "$MS_DIR" "$MS_DIR/nodirsync.so"
	run python3 "$BATS_TEST_DIRNAME/crashcheck/crashcheck.py" "${CC_ARGS[@]}" \
		--states 4 --seed 7 --scenario quota --scenario bdat --preload "$MS_DIR/nodirsync.so"
	echo "$output"
	[ "$status" -eq 1 ]
	assert_line --regexp '^    lost: mailboxes/bob/new/[^ ]+ \(acknowledged by "250 2\.0\.0 queued as '
	assert_line --regexp '^    lost: Maildir/new/'
	refute_line --regexp '^crashcheck: .* 0 with a loss'
}
