#!/usr/bin/env bash
# Log scanning throughput: the agent's tailer with the default nginx rule set against
# `LC_ALL=C grep -c -E` with the same rules, on the same generated file, in the same run
# (DESIGN.md section 7). SIZE_MB=1024 by default.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${SIZE_MB:-1024}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p b24watch-agent --example scan

# A realistic mix for a Bitrix24 front end: nginx errors of several kinds, notices and warnings.
python3 - "$work/block.log" <<'PY'
import random, sys
random.seed(7)
paths = ["/bitrix/tools/public_session.php", "/crm/deal/details/%d/", "/bitrix/components/bitrix/main.ui.grid/ajax.php",
         "/rest/%d/im.recent.list.json", "/mobile/ajax.php", "/bitrix/services/main/ajax.php"]
out = []
for i in range(400_000):
    pid, conn = random.randint(1000, 9999), random.randint(1, 10**6)
    ip = "10.%d.%d.%d" % (random.randint(0, 255), random.randint(0, 255), random.randint(1, 254))
    p = random.choice(paths)
    url = p % random.randint(1, 99999) if "%d" in p else p
    r = random.random()
    if r < 0.15:
        line = '2024/05/01 10:%02d:%02d [error] %d#0: *%d upstream timed out (110: Connection timed out) while reading response header from upstream, client: %s, server: portal.example.com, request: "GET %s?sessid=%x HTTP/1.1", upstream: "http://127.0.0.1:8888%s", host: "portal.example.com"' % (i % 60, i % 60, pid, conn, ip, url, conn, url)
    elif r < 0.25:
        line = '2024/05/01 10:%02d:%02d [error] %d#0: *%d open() "/home/bitrix/www%s" failed (2: No such file or directory), client: %s, server: portal.example.com, request: "GET %s HTTP/1.1"' % (i % 60, i % 60, pid, conn, url, ip, url)
    elif r < 0.27:
        line = '2024/05/01 10:%02d:%02d [crit] %d#0: *%d connect() to unix:/var/run/php-fpm.sock failed (11: Resource temporarily unavailable) while connecting to upstream, client: %s' % (i % 60, i % 60, pid, conn, ip)
    elif r < 0.35:
        line = '2024/05/01 10:%02d:%02d [warn] %d#0: *%d an upstream response is buffered to a temporary file /var/lib/nginx/tmp/proxy/%d while reading upstream, client: %s' % (i % 60, i % 60, pid, conn, conn, ip)
    else:
        line = '2024/05/01 10:%02d:%02d [notice] %d#0: *%d client %s closed keepalive connection (104: Connection reset by peer) while reading client request headers' % (i % 60, i % 60, pid, conn, ip)
    out.append(line)
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
block_mb=$(( $(stat -c %s "$work/block.log") / 1048576 ))
copies=$(( (size_mb + block_mb - 1) / block_mb ))
for _ in $(seq 1 "$copies"); do cat "$work/block.log"; done > "$work/bench.log"
rm "$work/block.log"
bytes=$(stat -c %s "$work/bench.log")
lines=$(wc -l < "$work/bench.log")
pattern='\[emerg\]|no live upstreams|\[(alert|crit)\]|upstream timed out|while connecting to upstream|upstream prematurely closed|\[error\]|\[warn\]'
cat "$work/bench.log" > /dev/null # both runs read from the page cache

# Best of three runs each, alternating, so both see the same machine state.
grep_s=999
agent_lps=0
for _ in 1 2 3; do
    start=$(date +%s%N)
    matched=$(LC_ALL=C grep -c -E "$pattern" "$work/bench.log")
    grep_s=$(awk -v a="$start" -v b="$(date +%s%N)" -v best="$grep_s" 'BEGIN { t = (b - a) / 1e9; printf "%.3f", t < best ? t : best }')
    scan=$(target/release/examples/scan "$work/bench.log" nginx)
    lps=$(sed -E 's/.*lines_per_s=([0-9.]+).*/\1/' <<<"$scan")
    agent_lps=$(awk -v a="$lps" -v best="$agent_lps" 'BEGIN { print (a > best ? a : best) }')
done
echo "file: bytes=$bytes lines=$lines"
echo "grep: matching_lines=$matched best_seconds=$grep_s"
echo "agent (last run): $scan"
awk -v a="$agent_lps" -v l="$lines" -v g="$grep_s" 'BEGIN { gl = l / g; printf "lines_per_s=%.0f grep_lines_per_s=%.0f ratio=%.2f\n", a, gl, a / gl }'
