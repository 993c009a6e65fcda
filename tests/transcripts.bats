#!/usr/bin/env bats
# Golden transcripts, as Postfix keeps them: tests/transcripts/NAME.in holds
# the client's bytes (CRLFs and all), NAME.ref the exact bytes mailslot
# must send back, after ms_normalize (queue names, session ids).  An
# optional NAME.args holds extra mailslot arguments, one a line; an
# optional NAME.msg the messages that must be in new/ afterwards, in the
# order delivered, each normalised by ms_normalize_msg (Received id and
# date).  Each transcript runs over a pipe, with hostname=mx.test and a
# fresh Maildir.
#
# To write a new one: make NAME.in, run
#     tests/lib/transcript tests/transcripts/NAME > tests/transcripts/NAME.ref
# (with MS_TRANSCRIPT_DIR=DIR it leaves the Maildir in DIR for a .msg)
# and read every line of the .ref against SPEC.md before committing it.

load 'lib/common'

setup() { ms_setup; }
teardown() { ms_teardown; }

# The messages in new/ of the Maildir $1, oldest first, normalised.
stored_messages() {
	local f
	for f in $(find "$1/new" -type f -printf '%f\n' | sort -t . -k 1,1n -k 2,2); do
		ms_normalize_msg <"$1/new/$f"
	done
}

@test "golden transcripts: every NAME.in gets exactly NAME.ref" {
	local in msg base name failed=() n=0
	for in in "$MS_REPO"/tests/transcripts/*.in; do
		base=${in%.in}
		name=${base##*/}
		n=$((n + 1))
		[ -f "$base.ref" ] || { failed+=("$name (no .ref)"); continue; }
		MS_USER=$MS_USER MS_TRANSCRIPT_DIR="$MS_DIR/$name" "$MS_LIB/transcript" "$base" >"$MS_DIR/$name.got" ||
			true
		if ! cmp -s "$base.ref" "$MS_DIR/$name.got"; then
			failed+=("$name")
			{
				echo "==== transcript $name: the exchange"
				[ -f "$base.args" ] && echo "args: $(tr '\n' ' ' <"$base.args")"
				echo "---- client sent ($name.in):"
				ms_visible "$in"
				echo "---- expected ($name.ref):"
				ms_visible "$base.ref"
				echo "---- got:"
				ms_visible "$MS_DIR/$name.got"
				echo "---- diff -u expected got:"
				diff -u <(ms_visible "$base.ref") <(ms_visible "$MS_DIR/$name.got") || true
				echo "---- log:"
				cat "$MS_DIR/$name/log" 2>/dev/null
			} >&2
		fi
	done
	[ "$n" -gt 0 ] || fail "no transcripts found"
	for msg in "$MS_REPO"/tests/transcripts/*.msg; do
		[ -e "$msg" ] || continue
		base=${msg%.msg}
		name=${base##*/}
		stored_messages "$MS_DIR/$name/Maildir" >"$MS_DIR/$name.stored"
		if ! cmp -s "$msg" "$MS_DIR/$name.stored"; then
			failed+=("$name (stored messages)")
			{
				echo "==== transcript $name: the stored messages"
				echo "---- expected ($name.msg):"
				ms_visible "$msg"
				echo "---- got:"
				ms_visible "$MS_DIR/$name.stored"
				echo "---- diff -u expected got:"
				diff -u <(ms_visible "$msg") <(ms_visible "$MS_DIR/$name.stored") || true
			} >&2
		fi
	done
	[ "${#failed[@]}" -eq 0 ] || fail "transcripts that differ: ${failed[*]}"
}
