#!/usr/bin/env bats
# Faults during delivery.  Every call of a syscall that touches the Maildir
# during a transaction is made to fail in turn, with EIO, ENOSPC and EDQUOT
# (strace --inject, driven by tests/lib/hostile.py over a socketpair): the
# client must get 451 (EIO) or 452 (ENOSPC, EDQUOT) and nothing may reach
# new/, or, where the failure loses nothing (closing a directory, say), 250
# with the message in new/ byte for byte; no tmp file may be left; and the
# next transaction on the same connection must be delivered.  Then real
# ENOSPC, from a small tmpfs the test mounts.

load 'lib/common'
load 'lib/hostile'

setup() {
	ms_setup
	command -v strace >/dev/null || skip "strace is not installed"
	MS_MOUNTED=
}

teardown() {
	ms_teardown
	if [ -n "$MS_MOUNTED" ]; then
		umount "$MS_MOUNTED" 2>/dev/null || umount -l "$MS_MOUNTED" 2>/dev/null || true
	fi
}

# faults SYSCALL [hostile.py options]: every call of SYSCALL, every error.
faults() {
	local sc=$1
	shift
	# strace goes around the wrapper too
	case $MAILSLOT_WRAPPER in *valgrind*) skip "not under valgrind: too slow under strace" ;; esac
	ms_cmd
	run python3 "$MS_LIB/hostile.py" faults --maildir "$MS_MAILDIR" --syscall "$sc" "$@" \
	    -- "${MS_CMD[@]}"
	assert_success
	refute_output --partial FAIL
	assert_output --regexp "(^|$'\n')$sc#[0-9]+ "
}

@test "write fails (the message file): 451/452, nothing in new/, the next message goes" {
	# 300 kB: several write() calls, each made to fail in turn
	faults write --size 300000
}

@test "fsync fails (the file, then new/): 451/452, nothing in new/, the next message goes" {
	faults fsync
}

@test "linkat into new/ fails: 451/452, nothing in new/, the next message goes" {
	faults linkat
}

@test "openat fails (Maildir, tmp/ file, maildirsize): 451/452 or harmless, the next message goes" {
	faults openat
}

@test "close fails (the message file, directories): 451/452 or harmless, the next message goes" {
	faults close
}

@test "mkdir fails: a Maildir that cannot be created is 421 at the greeting; an existing one is never re-created" {
	case $MAILSLOT_WRAPPER in *valgrind*) skip "not under valgrind: too slow under strace" ;; esac
	printf 'EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n' >"$MS_DIR/in"
	ms_cmd -o line_endings=crlf
	# The Maildir is missing: its mkdir fails, the client hears 421 and nothing else.
	rm -rf "$MS_MAILDIR"
	LSAN_OPTIONS=detect_leaks=0 strace -f -qq -o /dev/null -e trace=mkdir,mkdirat \
	    -e inject=mkdir,mkdirat:error=EACCES \
	    "${MS_CMD[@]/#LSAN_OPTIONS=*/LSAN_OPTIONS=detect_leaks=0}" \
	    <"$MS_DIR/in" >"$MS_DIR/out" 2>/dev/null || true
	run cat "$MS_DIR/out"
	assert_output --regexp '^421 4\.3\.0 '
	assert_equal "$(grep -c '' "$MS_DIR/out")" 1
	# It exists: a session makes no mkdir call at all.
	"${MS_CMD[@]}" <"$MS_DIR/in" >/dev/null 2>&1
	LSAN_OPTIONS=detect_leaks=0 strace -f -qq -o "$MS_DIR/trace" -e trace=mkdir,mkdirat \
	    "${MS_CMD[@]/#LSAN_OPTIONS=*/LSAN_OPTIONS=detect_leaks=0}" \
	    <"$MS_DIR/in" >"$MS_DIR/out" 2>/dev/null
	run grep -c '250 2.0.0 queued' "$MS_DIR/out"
	assert_output 1
	# (a sanitizer's runtime makes its report directory: only mailslot's count)
	run sh -c 'grep -E "^[0-9]+ +mkdir" "$1" | grep -E "mkdirat\\(|$2" | wc -l' sh "$MS_DIR/trace" "$MS_DIR"
	assert_output 0
}

@test "unlinkat of the tmp/ name fails after the link: the message is delivered once" {
	# Only a named tmp/ file has a name to unlink: without /proc/self/fd.
	ms_noproc_wrapper
	faults unlinkat
}

@test "an unnamed tmp/ file (O_TMPFILE): a delivery unlinks nothing, and leaves nothing in tmp/" {
	case $MAILSLOT_WRAPPER in *valgrind*) skip "not under valgrind: too slow under strace" ;; esac
	printf 'EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n' >"$MS_DIR/in"
	ms_cmd -o line_endings=crlf
	LSAN_OPTIONS=detect_leaks=0 strace -f -qq -o "$MS_DIR/trace" -e trace=unlink,unlinkat,openat \
	    "${MS_CMD[@]/#LSAN_OPTIONS=*/LSAN_OPTIONS=detect_leaks=0}" \
	    <"$MS_DIR/in" >"$MS_DIR/out" 2>/dev/null
	run grep -c '250 2.0.0 queued' "$MS_DIR/out"
	assert_output 1
	grep -q 'O_TMPFILE' "$MS_DIR/trace" || skip "no O_TMPFILE on this file system"
	run grep -E '^[0-9]+ +unlink' "$MS_DIR/trace"
	assert_output ''
	assert_equal "$(ms_tmp_count)" 0
	assert_equal "$(ms_new_count)" 1
}

@test "delivery never calls rename(): a link cannot replace an existing message" {
	case $MAILSLOT_WRAPPER in *valgrind*) skip "not under valgrind: too slow under strace" ;; esac
	printf 'EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n' >"$MS_DIR/in"
	ms_cmd -o line_endings=crlf
	# LeakSanitizer cannot work under ptrace
	LSAN_OPTIONS=detect_leaks=0 strace -f -qq -o "$MS_DIR/trace" \
	    -e trace=rename,renameat,renameat2,link,linkat \
	    "${MS_CMD[@]/#LSAN_OPTIONS=*/LSAN_OPTIONS=detect_leaks=0}" \
	    <"$MS_DIR/in" >"$MS_DIR/out" 2>/dev/null
	run grep -c '250 2.0.0 queued' "$MS_DIR/out"
	assert_output 1
	run grep -E '^[0-9]+ +rename' "$MS_DIR/trace"
	assert_failure
	run grep -cE '^[0-9]+ +linkat\(' "$MS_DIR/trace"
	assert_output 1
}

# ---- real ENOSPC on a small tmpfs -------------------------------------------

# A tmpfs at $MS_DIR/small with mount options $1, the Maildir in it.
small_fs() {
	hs_skip_unless_root_mount
	mkdir -p "$MS_DIR/small"
	mount -t tmpfs -o "$1" tmpfs "$MS_DIR/small" || skip "cannot mount tmpfs -o $1"
	MS_MOUNTED=$MS_DIR/small
	MS_MAILDIR=$MS_DIR/small/Maildir
	mkdir -p "$MS_MAILDIR/tmp" "$MS_MAILDIR/new" "$MS_MAILDIR/cur"
	MS_OPTS+=(-o "maildir=$MS_MAILDIR" -o min_free_space=0)
}

TXN='MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n'

@test "tmpfs: the disk fills mid-message: 452 4.3.1; space freed, the next message on the connection goes" {
	small_fs size=256k
	# leave about 32 kB free
	head -c $((224 * 1024)) /dev/zero >"$MS_DIR/small/filler" || true
	python3 -c 'import sys; sys.stdout.buffer.write(b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 2000)' >"$MS_DIR/big"
	printf 'Subject: small\r\n\r\nfits\r\n' >"$MS_DIR/small-msg"
	printf 'Subject: small\n\nfits\n' >"$MS_DIR/expect"
	ms_listen
	run smtp_sock --timeout 10 --send "EHLO c.example\r\n${TXN}" --wait '354 ' \
	    --send-file "$MS_DIR/big" --send '.\r\n' --wait '452 4.3.1' \
	    --run "rm -f '$MS_DIR/small/filler'" \
	    --send "RSET\r\n${TXN}" --wait '354 ' --send-file "$MS_DIR/small-msg" \
	    --send '.\r\n' --wait '250 2.0.0 queued' --send 'QUIT\r\n'
	assert_success
	assert_line --regexp '^452 4\.3\.1 '
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_line --index -1 --regexp '^221 '
	hs_assert_one_message "$MS_DIR/expect"
}

# A tmpfs whose inodes are all taken: the root, Maildir, tmp, new, cur and
# two fillers to remove one at a time; and a small message for it.
no_inode_fs() {
	small_fs size=256k,nr_inodes=7
	: >"$MS_DIR/small/filler1" && : >"$MS_DIR/small/filler2" ||
		skip "the tmpfs has fewer inodes than asked"
	printf 'Subject: small\r\n\r\nfits\r\n' >"$MS_DIR/small-msg"
	printf 'Subject: small\n\nfits\n' >"$MS_DIR/expect"
}

@test "tmpfs: no inode for the message file: 452 4.3.1; one freed, the unnamed file and its link take it" {
	# The O_TMPFILE file takes the one inode freed, and linking it, its
	# first name, needs no other.
	no_inode_fs
	ms_listen
	run smtp_sock --timeout 10 --send "EHLO c.example\r\n${TXN}" --wait '452 4.3.1' \
	    --run "rm -f '$MS_DIR/small/filler1'" \
	    --send "RSET\r\n${TXN}" --wait '354 ' --send-file "$MS_DIR/small-msg" \
	    --send '.\r\n' --wait '250 2.0.0 queued' --send 'QUIT\r\n'
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^452 4\.3\.1 ')" 1
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_line --index -1 --regexp '^221 '
	hs_assert_one_message "$MS_DIR/expect"
}

@test "tmpfs, named tmp/ files: no inode for the tmp/ file, then none for the link: 452 4.3.1 each; freed, the next message goes" {
	# As above, but without /proc/self/fd, so the tmp/ file has a name:
	# tmpfs counts a second name against nr_inodes too, so with one inode
	# free the tmp/ file is made but its link into new/ is not.
	ms_noproc_wrapper
	no_inode_fs
	ms_listen
	run smtp_sock --timeout 10 --send "EHLO c.example\r\n${TXN}" --wait '452 4.3.1' \
	    --run "rm -f '$MS_DIR/small/filler1'" \
	    --send "RSET\r\n${TXN}" --wait '354 ' --send-file "$MS_DIR/small-msg" \
	    --send '.\r\n' --wait '452 4.3.1' \
	    --run "rm -f '$MS_DIR/small/filler2'" \
	    --send "RSET\r\n${TXN}" --wait '354 ' --send-file "$MS_DIR/small-msg" \
	    --send '.\r\n' --wait '250 2.0.0 queued' --send 'QUIT\r\n'
	assert_success
	assert_equal "$(printf '%s\n' "$output" | grep -c '^452 4\.3\.1 ')" 2
	assert_equal "$(printf '%s\n' "$output" | grep -c '^354 ')" 2
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_line --index -1 --regexp '^221 '
	hs_assert_one_message "$MS_DIR/expect"
}

@test "tmpfs: a full disk refuses MAIL with 452 4.3.1 below min_free_space; SIZE= counts" {
	small_fs size=1m
	# free space is about 1 MB: 512k + SIZE=600000 is over it, SIZE=100000 is not
	run smtp_pipe "EHLO c.example\r\nMAIL FROM:<a@x.example> SIZE=600000\r\nMAIL FROM:<a@x.example> SIZE=100000\r\nQUIT\r\n" \
	    -o min_free_space=512k
	assert_success
	assert_line --regexp '^452 4\.3\.1 '
	assert_line --regexp '^250 2\.1\.0 '
	run smtp_pipe "EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nQUIT\r\n" -o min_free_space=2m
	assert_success
	assert_line --regexp '^452 4\.3\.1 '
}
