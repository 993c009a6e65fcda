#!/usr/bin/env bats
# Memory does not grow with message size or line length: a 100 MB message
# and a single 1 MB line are delivered byte for byte while mailslot's peak
# RSS (VmHWM, read while it waits for the command after the 250) stays
# under a fixed bound.  The data is generated into files and streamed by
# the client; none of it passes through a shell variable.

load 'lib/common'

# The bound on VmHWM, in KiB.  A small session peaks near 2 MiB.
RSS_BOUND_KB=8192

setup() {
	ms_setup
	[ -z "$MAILSLOT_WRAPPER" ] || skip "peak RSS means nothing under $MAILSLOT_WRAPPER"
}
teardown() { ms_teardown; }

# gen OUT WANT_SHA MODE N: the client's bytes (DATA content and the
# terminator) into OUT, the sha256 of what must be stored after the trace
# headers into WANT_SHA.
gen() {
	python3 - "$@" <<'EOF'
import hashlib, sys
out, want, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
h = hashlib.sha256()
with open(out, "wb") as f:
    def put(sent, stored):
        f.write(sent)
        h.update(stored)
    put(b"Subject: big\r\n\r\n", b"Subject: big\n\n")
    if mode == "lines":
        # n numbered lines of 100 octets with CRLF; every 997th starts
        # with a dot, which the client doubles
        buf_s, buf_t = [], []
        for i in range(n):
            text = b"%08d " % i + b"abcdefghijklmnopqrstuvwxyz0123456789" * 2 + b"ABCDEFGHIJKLMNOPQ"
            text = text[:98]
            if i % 997 == 0:
                text = b"." + text[1:]
                buf_s.append(b"." + text + b"\r\n")
            else:
                buf_s.append(text + b"\r\n")
            buf_t.append(text + b"\n")
            if len(buf_s) == 4096:
                put(b"".join(buf_s), b"".join(buf_t))
                buf_s, buf_t = [], []
        put(b"".join(buf_s), b"".join(buf_t))
    else:
        # one line of n octets, every byte value but CR and LF
        alphabet = bytes(b for b in range(256) if b not in (10, 13))
        chunk = alphabet * (65536 // len(alphabet))
        left = n
        while left > 0:
            k = min(left, len(chunk))
            put(chunk[:k], chunk[:k])
            left -= k
        put(b"\r\n", b"\n")
    f.write(b".\r\n")
open(want, "w").write(h.hexdigest() + "\n")
EOF
}

# The sha256 of the stored message after its trace headers (five lines).
stored_sha() {
	tail -n +6 "$1" | sha256sum | cut -d' ' -f1
}

deliver_file() {
	smtp_exec --send 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n' \
	    --wait '354 ' --send-file "$1" --wait '250 2.0.0 queued as ' --hwm \
	    --send 'QUIT\r\n' --timeout 120 -- -o max_message_size=200M
}

@test "memory: a 100 MB message is stored byte for byte with a bounded peak RSS" {
	gen "$MS_DIR/data" "$MS_DIR/want" lines $((1024 * 1024))
	run deliver_file "$MS_DIR/data"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	assert_equal "$(ms_report exit)" 0
	local f hwm
	f=$(ms_new_file)
	assert_equal "$(stored_sha "$f")" "$(cat "$MS_DIR/want")"
	hwm=$(ms_report vmhwm_kb)
	[ -n "$hwm" ] || fail "no VmHWM read"
	[ "$hwm" -lt "$RSS_BOUND_KB" ] || fail "peak RSS ${hwm} KiB for a 100 MB message (bound $RSS_BOUND_KB)"
	rm -f "$MS_DIR/data" "$f"
}

@test "memory: a single 1 MB line is stored byte for byte with a bounded peak RSS" {
	gen "$MS_DIR/data" "$MS_DIR/want" line $((1024 * 1024))
	run deliver_file "$MS_DIR/data"
	assert_success
	assert_line --regexp '^250 2\.0\.0 queued as '
	local hwm
	assert_equal "$(stored_sha "$(ms_new_file)")" "$(cat "$MS_DIR/want")"
	hwm=$(ms_report vmhwm_kb)
	[ -n "$hwm" ] || fail "no VmHWM read"
	[ "$hwm" -lt "$RSS_BOUND_KB" ] || fail "peak RSS ${hwm} KiB for a 1 MB line (bound $RSS_BOUND_KB)"
}

@test "memory: a 32 MB line and a 10 MB command line, stay bounded" {
	gen "$MS_DIR/data" "$MS_DIR/want" line $((32 * 1024 * 1024))
	run deliver_file "$MS_DIR/data"
	assert_success
	assert_equal "$(stored_sha "$(ms_new_file)")" "$(cat "$MS_DIR/want")"
	[ "$(ms_report vmhwm_kb)" -lt "$RSS_BOUND_KB" ] || fail "peak RSS $(ms_report vmhwm_kb) KiB"
	run smtp_exec --send 'NOOP ' --repeat 'x' $((10 * 1024 * 1024)) --send '\r\n' \
	    --wait '500 5.5.2 ' --hwm --send 'QUIT\r\n' --timeout 60
	assert_success
	assert_line --index -1 '221 2.0.0 mx.test Service closing transmission channel'
	[ "$(ms_report vmhwm_kb)" -lt "$RSS_BOUND_KB" ] || fail "peak RSS $(ms_report vmhwm_kb) KiB"
}

@test "memory: a message over max_message_size is drained without growing" {
	gen "$MS_DIR/data" "$MS_DIR/want" lines $((200 * 1024))
	run smtp_exec --send 'EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n' \
	    --wait '354 ' --send-file "$MS_DIR/data" --wait '552 ' --hwm --send 'QUIT\r\n' \
	    --timeout 60 -- -o max_message_size=1M
	assert_success
	assert_line --index -2 --regexp '^552 5\.3\.4 '
	assert_equal "$(ms_new_count)" 0
	assert_equal "$(ms_tmp_count)" 0
	[ "$(ms_report vmhwm_kb)" -lt "$RSS_BOUND_KB" ] || fail "peak RSS $(ms_report vmhwm_kb) KiB"
}
