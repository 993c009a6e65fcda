# bench/table.awk: the table of `make bench`, from bench.sh's summary file.
#
# Input: "key=value ..." header lines, "rss WORKLOAD PROG MAX_KIB
# MEDIAN_KIB N BAD CPU_US" lines (the rsswrap pass), and one line per load
# run: "WORKLOAD PROG TAG key=value ...".  Medians are over the runs tagged
# round*; ratio is median(mailslot) / median(floor); "round ratios" is the
# range of mailslot / floor within each round, a measure of the noise.

function median(list,    n, v, i, j, t) {
	n = split(list, v, " ")
	if (n == 0)
		return ""
	for (i = 2; i <= n; i++)		# insertion sort: a handful of values
		for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) {
			t = v[j]; v[j] = v[j - 1]; v[j - 1] = t
		}
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}

function verdict(value, op, limit) {
	if (value == "")
		return "?"
	if (op == ">=")
		return value + 0 >= limit ? "met" : "MISSED"
	return value + 0 <= limit ? "met" : "MISSED"
}

function fmt(v, f) {
	return v == "" ? "-" : sprintf(f, v)
}

/^rss / {
	rss[$2, $3] = $4
	rssmed[$2, $3] = $5
	rssbad += $7
	cpu[$2, $3] = $8
	next
}

/^[a-z0-9]+=/ && !/^(i|ii|iii|iv|v|vi) / {
	for (i = 1; i <= NF; i++) {
		split($i, kv, "=")
		hdr[kv[1]] = kv[2]
	}
	next
}

{
	w = $1; prog = $2; tag = $3
	delete f
	for (i = 4; i <= NF; i++) {
		split($i, kv, "=")
		f[kv[1]] = kv[2]
	}
	runs++
	if (f["badexit"] == "yes") {
		badexit++
		next
	}
	if (f["valid"] != "yes") {
		invalid++
		bad = bad " " w "/" prog "/" tag
	}
	failed += f["failed"]
	lost += f["lost"]; dup += f["dup"]; stray += f["stray"]
	if (tag !~ /^round/)
		next
	metric = w == "iii" ? f["data_mb_s"] : f["msgs_per_s"]
	val[w, prog] = val[w, prog] " " metric
	byround[w, prog, tag] = metric
	if (!((w, tag) in seen)) {
		seen[w, tag] = 1
		tags[w] = tags[w] " " tag
	}
	p50[w, prog] = p50[w, prog] " " f["p50_ms"]
	p99[w, prog] = p99[w, prog] " " f["p99_ms"]
}

END {
	name["i"] = sprintf("(i)   %d x 4 KiB, c=1", hdr["n1"])
	name["ii"] = sprintf("(ii)  %d x 4 KiB, c=8", hdr["n2"])
	name["iii"] = sprintf("(iii) 1 x %d MB", hdr["big"] / 1000000)
	name["iv"] = sprintf("(iv)  %d x %d rcpt, %s", hdr["n4"], hdr["rcpts4"],
	    hdr["boxes"] == "yes" ? hdr["rcpts4"] " Maildirs" : "catch-all")
	unit["i"] = unit["ii"] = unit["iv"] = "msgs/s"
	unit["iii"] = "MB/s"

	printf "%d rounds, mailslot and floor interleaved, medians; ratio = mailslot / floor%s\n\n",
	    hdr["rounds"], hdr["quick"] != "0" ? " (QUICK: small N)" : ""
	printf "%-36s %-6s %9s %9s %6s %-13s %-11s %-15s %-15s %-13s %-11s\n", "workload", "unit",
	    "mailslot", "floor", "ratio", " target", "rounds", "p50 ms m/f", "p99 ms m/f",
	    "RSS KiB m/f", "CPU us m/f"
	rssmax = 0
	split("i ii iii iv", ws, " ")
	for (k = 1; k <= 4; k++) {
		w = ws[k]
		m = median(val[w, "mailslot"]); fl = median(val[w, "floor"])
		ratio = (m != "" && fl + 0 > 0) ? m / fl : ""
		lo = hi = ""
		nt = split(tags[w], tl, " ")
		for (t = 1; t <= nt; t++) {
			a = byround[w, "mailslot", tl[t]]; b = byround[w, "floor", tl[t]]
			if (a == "" || b + 0 <= 0)
				continue
			q = a / b
			if (lo == "" || q < lo) lo = q
			if (hi == "" || q > hi) hi = q
		}
		printf "%-36s %-6s %9s %9s %6s %-13s %-11s %-15s %-15s %-13s %-11s\n", name[w], unit[w],
		    fmt(m, "%.1f"), fmt(fl, "%.1f"), fmt(ratio, "%.2f"),
		    " >=0.90 " verdict(ratio, ">=", 0.9),
		    fmt(lo, "%.2f") "-" fmt(hi, "%.2f"),
		    fmt(median(p50[w, "mailslot"]), "%.2f") "/" fmt(median(p50[w, "floor"]), "%.2f"),
		    fmt(median(p99[w, "mailslot"]), "%.2f") "/" fmt(median(p99[w, "floor"]), "%.2f"),
		    rss[w, "mailslot"] "/" rss[w, "floor"],
		    cpu[w, "mailslot"] "/" cpu[w, "floor"]
		if (rss[w, "mailslot"] + 0 > rssmax)
			rssmax = rss[w, "mailslot"] + 0
		if (rss[w, "floor"] + 0 > rssfmax)
			rssfmax = rss[w, "floor"] + 0
	}
	printf "%-36s %-6s %9s %9s %6s %-13s\n", "peak RSS, every workload", "KiB",
	    rssmax, rssfmax, fmt(rssfmax ? rssmax / rssfmax : "", "%.2f"),
	    " <=2048 " verdict(rssmax, "<=", 2048)
	r1 = (hdr["im1"] + 0 > 0 && hdr["if1"] + 0 > 0) ? hdr["im1"] / hdr["if1"] : ""
	printf "%-36s %-6s %9s %9s %6s %-13s\n", "instructions, 4 KiB session, 1 rcpt", "Minstr",
	    fmt(hdr["im1"] / 1e6, "%.3f"), fmt(hdr["if1"] / 1e6, "%.3f"), fmt(r1, "%.2f"),
	    " <=2.50 " verdict(r1, "<=", 2.5)
	r10 = (hdr["im10"] + 0 > 0 && hdr["if10"] + 0 > 0) ? hdr["im10"] / hdr["if10"] : ""
	printf "%-36s %-6s %9s %9s %6s %-13s\n", "instructions, 4 KiB session, 10 rcpt", "Minstr",
	    fmt(hdr["im10"] / 1e6, "%.3f"), fmt(hdr["if10"] / 1e6, "%.3f"), fmt(r10, "%.2f"), " -"
	h = median(val["v", "haproxy"]); d = median(val["v", "direct"])
	if (h != "" || d != "")
		printf "%-36s %-6s %9s %9s %6s  per message: %s us more through HAProxy\n",
		    sprintf("(v)   %d x 4 KiB, c=8, HAProxy/direct", hdr["n2"]), "msgs/s",
		    fmt(h, "%.1f"), fmt(d, "%.1f"), fmt(d + 0 > 0 ? h / d : "", "%.2f"),
		    (h + 0 > 0 && d + 0 > 0) ? sprintf("%.1f", 1e6 / h - 1e6 / d) : "-"
	h = median(val["vi", "milter"]); d = median(val["vi", "plain"])
	if (h != "" || d != "")
		printf "%-36s %-6s %9s %9s %6s  per message: %s us more through the milter\n",
		    sprintf("(vi)  %d x 4 KiB, c=1, no-op milter/none", hdr["n1"]), "msgs/s",
		    fmt(h, "%.1f"), fmt(d, "%.1f"), fmt(d + 0 > 0 ? h / d : "", "%.2f"),
		    (h + 0 > 0 && d + 0 > 0) ? sprintf("%.1f", 1e6 / h - 1e6 / d) : "-"
	printf "\nload runs: %d; failed sessions %d; messages lost %d, duplicated %d, stray %d; " \
	    "sessions with a bad exit: %d; RSS passes with a bad exit: %d\n",
	    runs, failed, lost, dup, stray, badexit + 0, rssbad + 0
	if (invalid > 0 || badexit > 0)
		printf "INVALID RUNS:%s\n", bad
	else
		print "every run valid: each accepted message is in new/ exactly once"
	print "RSS and CPU: ru_maxrss (largest) and user+system time (median) of each session process"
	print "(bench/rsswrap), " hdr["nrss"] " sessions per workload, 1 for (iii); instructions: callgrind, fed over a pipe"
}
