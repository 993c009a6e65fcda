#!/usr/bin/env bats
# kill -9 at random points.  200 sessions over a socketpair, each killed
# with SIGKILL at a point drawn at random: a random delay from the start,
# inside the data, just after the final dot (during fsync and link), just
# after the 250, inside a second transaction.  Afterwards every message
# that got its 250 is in new/ byte for byte, every file in new/ is a whole
# message that was sent, and none is there twice.  (Files left in tmp/ are
# what Maildir allows: readers clean tmp/ of files older than 36 hours.)

load 'lib/common'
load 'lib/hostile'

setup() { ms_setup; }
teardown() { ms_teardown; }

crash_run() {
	case $MAILSLOT_WRAPPER in *valgrind*) skip "not under valgrind: too slow for 200 sessions" ;; esac
	ms_cmd
	run python3 "$MS_LIB/hostile.py" crash --maildir "$MS_MAILDIR" --sessions 200 \
	    --seed "$1" -- "${MS_CMD[@]}"
	assert_success
	refute_output --partial FAIL
	assert_output --regexp '^sessions=200 acked=[1-9][0-9]* '
}

@test "200 sessions killed with SIGKILL at random points: every 250 is in new/, whole, once" {
	crash_run 1
}

@test "the same with another draw" {
	crash_run "$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"
}
