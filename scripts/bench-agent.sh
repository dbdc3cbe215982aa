#!/usr/bin/env bash
# Measures the agent's steady RSS and CPU per tick (agent-release build, default samplers, 10 s
# interval, sending to a local collector) and, in the same run, node_exporter's CPU per scrape
# and RSS as the anchor (DESIGN.md section 7). With MariaDB installed every check is on: MySQL,
# Bitrix (one site), logs being written (nginx, Apache/PHP, Bitrix exception log), the portal
# probe derived from an nginx vhost (a python3 http.server), services, and the preventive checks:
# backups (a Bitrix archive and a BitrixVM schedule), database upkeep, versions (core version
# file, a stand-in PHP CLI), web workers (nginx stub_status and Apache server-status pages) and
# the push server's /server-stat, on their default intervals. At the end it lists the check
# results the collector received from the agent and fails when a check family is missing.
# Prints `agent_rss_mib=` and `agent_cpu_ms_per_tick=`, the anchors, and where the RSS is (smaps).
#   DURATION=180 scripts/bench-agent.sh
# EVERY_TICK=1 runs the web worker and push checks every tick and backups, database upkeep and
# versions every minute, their shortest (the worst case; default: each its own interval).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-180}
interval=10
cargo build --release -q -p b24watch-collector --bin b24watch-collector
cargo build --profile agent-release -q -p b24watch-agent --bin b24watch-agent
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# On-CPU time in nanoseconds of every thread of a process (schedstat), far finer than the 10 ms
# jiffies of /proc/<pid>/stat. Go exporters serve scrapes on other threads than the main one.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%d", s }'; }
# Scrapes an exporter $scrapes times and prints its CPU per scrape in ms (needs port and pid).
exporter_ms_per_scrape() {
    curl -s "http://127.0.0.1:$1/metrics" >&3
    local c0 c1
    c0=$(cpu_ns "$2")
    for _ in $(seq 1 "$scrapes"); do curl -s "http://127.0.0.1:$1/metrics" >&3; sleep 0.2; done
    c1=$(cpu_ns "$2")
    awk -v d=$((c1 - c0)) -v n="$scrapes" 'BEGIN { printf "%.3f", d / 1e6 / n }'
}
# utime + stime in ms from /proc/<pid>/stat: coarse, but it keeps the CPU of threads that exited.
cpu_stat_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) * 1000 / hz }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# With MariaDB installed, the agent also checks a MariaDB of the bench's own and a Bitrix site
# on it (every check on every tick: the DESIGN budget's "host + MySQL + Bitrix checks").
agent_config="$work/absent.toml"
mysqld=$(command -v mariadbd || ls /usr/sbin/mariadbd 2>/dev/null || true)
if [ -n "$mysqld" ] && command -v mariadb-install-db >/dev/null 2>&1; then
    mkdir -p "$work/db"
    user=$(id -un)
    mariadb-install-db --no-defaults --datadir="$work/db/data" --auth-root-authentication-method=normal \
        --skip-test-db --user="$user" >/dev/null 2>&1
    sock="$work/db/my.sock"
    "$mysqld" --no-defaults --datadir="$work/db/data" --socket="$sock" --skip-networking --user="$user" \
        --innodb-buffer-pool-size=16M --skip-log-bin --sql-mode= --innodb-strict-mode=OFF \
        --log-error="$work/db/error.log" &
    pids+=($!)
    for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
    sql() { mariadb --no-defaults --socket="$sock" -uroot -e "$1"; }
    sql "CREATE USER 'b24watch'@'localhost' IDENTIFIED BY 'bench' WITH MAX_USER_CONNECTIONS 3;
         GRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO 'b24watch'@'localhost';
         CREATE DATABASE sitemanager;"
    mariadb --no-defaults --socket="$sock" -uroot sitemanager < scripts/bitrix-schema.sql
    sql "USE sitemanager; INSERT INTO b_agent(MODULE_ID, NAME, LAST_EXEC, NEXT_EXEC, RETRY_COUNT)
         SELECT 'main', CONCAT('Agent', seq, '();'), NOW(), NOW() + INTERVAL 1 HOUR, 0 FROM seq_1_to_300;
         INSERT INTO b_event(EVENT_NAME, LID, DATE_INSERT, SUCCESS_EXEC) SELECT 'E', 's1', NOW(), 'Y' FROM seq_1_to_5000;"
    mkdir -p "$work/site/www/bitrix"
    printf "<?php return ['connections' => ['value' => ['default' => ['host' => 'localhost', 'database' => 'sitemanager', 'login' => 'bitrix0', 'password' => 'x']]]];\n" \
        > "$work/site/www/bitrix/.settings.php"
    echo bench > "$work/mysql.password"
    # Preventive checks' inputs: a Bitrix backup and a BitrixVM scheduled one, the core version
    # file, a stand-in PHP CLI, and static copies of the status pages in their real formats
    # (see agent/src/checks/{workers,push}.rs for the sources) behind one http.server.
    mkdir -p "$work/site/www/bitrix/backup" "$work/backup/archive" "$work/site/www/bitrix/modules/main/classes/general"
    head -c 300000 /dev/zero > "$work/site/www/bitrix/backup/$(date +%Y%m%d)_031500_full_a1B2c3D4e5F6g7H8.tar.gz"
    head -c 200000 /dev/zero > "$work/backup/archive/www_backup_sitemanager_$(date +%d.%m.%Y)_a1b2c3d4.tar.gz"
    echo "10 22 * * * bitrix /opt/webdir/bin/bx_backup.sh sitemanager $work/backup/archive" > "$work/crontab"
    printf '<?\ndefine("SM_VERSION","25.100.0");\ndefine("SM_VERSION_DATE","%s 10:00:00");\n?>\n' "$(date +%Y-%m-%d)" \
        > "$work/site/www/bitrix/modules/main/classes/general/version.php"
    printf '#!/bin/sh\nprintf 8.2.28\n' > "$work/php"
    chmod +x "$work/php"
    mkdir -p "$work/status/server-stat"
    printf 'Active connections: 291 \nserver accepts handled requests\n 16630948 16630948 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n' \
        > "$work/status/nginx_status"
    printf 'localhost\nServerVersion: Apache/2.4.57\nServerMPM: prefork\nTotal Accesses: 123456\nBusyWorkers: 3\nIdleWorkers: 7\nScoreboard: WWW_______......\n' \
        > "$work/status/server-status"
    printf '[{"pid":2101,"date":%s000,"processUniqueId":"sub-8010","websockets":12,"pollings":3,"channels":14},{"pid":2102,"date":%s000,"processUniqueId":"pub-9010","websockets":0,"pollings":0,"channels":0}]' \
        "$(date +%s)" "$(date +%s)" > "$work/status/server-stat/index.html"
    status_port=$(port)
    python3 -m http.server --bind 127.0.0.1 --directory "$work/status" "$status_port" >/dev/null 2>&1 &
    pids+=($!)
    # EVERY_TICK=1: workers and push every tick, the hourly checks every minute (their shortest).
    fast="" minute=""
    if [ "${EVERY_TICK:-0}" = 1 ]; then
        fast="interval_secs = $interval"
        minute="interval_secs = 60"
    fi
    # The portal: a static server behind a BitrixVM-style vhost whose root is the site.
    web_port=$(port)
    python3 -m http.server --bind 127.0.0.1 --directory "$work/site/www" "$web_port" >/dev/null 2>&1 &
    pids+=($!)
    mkdir -p "$work/nginx" "$work/logs"
    printf 'server {\n\tlisten %s;\n\tserver_name portal.example.com;\n\tset $docroot "%s";\n\troot "$docroot";\n}\n' \
        "$web_port" "$work/site/www" > "$work/nginx/bx_ext_portal.conf"
    agent_config="$work/agent.toml"
    cat > "$agent_config" <<EOF
[logs]
read_from = "beginning"
[[logs.file]]
name = "nginx_error"
paths = ["$work/logs/nginx_error.log"]
preset = "nginx"
[[logs.file]]
name = "httpd_error"
paths = ["$work/logs/httpd_error_log"]
preset = "httpd"
[[logs.file]]
name = "bitrix_exceptions"
paths = ["$work/logs/exceptions.log"]
preset = "bitrix_exceptions"
[mysql]
sockets = ["$sock"]
user = "b24watch"
password_file = "$work/mysql.password"
interval_secs = $interval
[bitrix]
site_roots = ["$work/site/www"]
interval_secs = $interval
[probe]
interval_secs = $interval
nginx_site_dirs = ["$work/nginx"]
[backup]
crontabs = ["$work/crontab"]
$minute
[database]
$minute
[versions]
php_binary = "$work/php"
$minute
[workers]
nginx_status_url = "http://127.0.0.1:$status_port/nginx_status"
apache_status_url = "http://127.0.0.1:$status_port/server-status?auto"
$fast
[push]
status_url = "http://127.0.0.1:$status_port/server-stat/"
$fast
EOF
    # Logs written while the agent runs: about 35 lines a second over three logs, some errors.
    (
        n=0
        while true; do
            n=$((n + 1))
            for i in 1 2 3 4 5 6; do
                echo "2026/11/29 10:00:00 [info] 1#1: *$n$i client closed keepalive connection" >> "$work/logs/nginx_error.log"
                echo "[Sun Nov 29 10:00:00.000 2026] [mpm_prefork:notice] [pid $n] AH00163: running" >> "$work/logs/httpd_error_log"
            done
            echo "2026/11/29 10:00:00 [error] 1#1: *$n open() \"/home/bitrix/www/x$n.png\" failed (2: No such file or directory)" >> "$work/logs/nginx_error.log"
            printf '2026-11-29 10:00:00 - Host: portal.example.com - UNCAUGHT_EXCEPTION - [Bitrix\\Main\\SystemException] \nrecord %s\n/home/bitrix/www/bitrix/modules/main/lib/x.php:1\n\t#0: trace\n' "$n" >> "$work/logs/exceptions.log"
            sleep 0.4
        done
    ) &
    pids+=($!)
    echo "checks: MySQL, one Bitrix site on a MariaDB of the bench's own, three logs being written, the portal probe and services, every $interval s"
else
    echo "checks: MariaDB not installed, host samplers only"
fi

grpc=$(port); http=$(port)
c=(target/release/b24watch-collector --config "$work/absent.toml" --data-dir "$work/c")
"${c[@]}" enroll bench > "$work/token"
B24WATCH_LOG=warn "${c[@]}" --grpc-listen "127.0.0.1:$grpc" --http-listen "127.0.0.1:$http" &
pids+=($!)
sleep 1
B24WATCH_LOG=warn target/agent-release/b24watch-agent --config "$agent_config" --collector-url "http://127.0.0.1:$grpc" \
    --token-file "$work/token" --state-dir "$work/a" --interval-secs "$interval" &
agent=$!
pids+=($agent)
sleep 25 # warm-up: two ticks, connection established
cpu0=$(cpu_ns "$agent")
stat0=$(cpu_stat_ms "$agent")
sleep "$duration"
cpu1=$(cpu_ns "$agent")
stat1=$(cpu_stat_ms "$agent")
n_ticks=$((duration / interval))
agent_ms_per_tick=$(awk -v d=$((cpu1 - cpu0)) -v n="$n_ticks" 'BEGIN { printf "%.3f", d / 1e6 / n }')
agent_stat_ms=$(awk -v d="$(awk -v a="$stat1" -v b="$stat0" 'BEGIN { print a - b }')" -v n="$n_ticks" 'BEGIN { printf "%.1f", d / n }')
echo "agent: rss_kib=$(rss_kib "$agent") hwm_kib=$(hwm_kib "$agent") cpu_ms_per_tick=$agent_ms_per_tick (stat: $agent_stat_ms, incl. exited threads, 10 ms ticks) ticks=$n_ticks"
echo "agent_rss_mib=$(awk -v k="$(rss_kib "$agent")" 'BEGIN { printf "%.2f", k / 1024 }') (budget 8)"
echo "agent_cpu_ms_per_tick=$agent_ms_per_tick"
# Where the resident memory is: the agent's own code and data (file-backed from its binary),
# shared libraries, anonymous memory (heap, thread stacks, allocator arenas).
awk -v bin="b24watch-agent" '
    /^[0-9a-f]+-[0-9a-f]+ / { path = (NF >= 6) ? $6 : "[anon]"; perms = $2; next }
    /^Rss:/ {
        kind = "other"
        if (index(path, bin)) kind = (perms ~ /x/) ? "binary_text" : "binary_data"
        else if (path ~ /\.so/) kind = "libs"
        else if (path == "[anon]" || path == "[heap]") kind = "anon"
        else if (path == "[stack]") kind = "stack"
        rss[kind] += $2
    }
    END { for (k in rss) printf "agent_rss_%s_kib=%d\n", k, rss[k] }' "/proc/$agent/smaps" | sort

# The figures count only if every check really ran: list the results the collector received.
if [ -n "${sock:-}" ]; then
    curl -s "http://127.0.0.1:$http/api/v1/hosts/bench/checks" > "$work/checks.json"
    python3 - "$work/checks.json" "http://127.0.0.1:$http/api/v1/hosts/bench/series" <<'PY' || checks_missing=1
import json, sys, urllib.request
checks = json.load(open(sys.argv[1]))["checks"]
seen = sorted({(c["check"], c["status"]) for c in checks})
print("checks received: " + " ".join(f"{c}={s}" for c, s in seen))
want = ["mysql_up", "bitrix_cron", "bitrix_db", "portal_probe", "service", "backup_age", "backup_size",
        "backup_space", "db_engine", "db_reclaimable", "db_log_tables", "bitrix_core_age", "php_version",
        "mysql_version", "web_workers", "push_server"]
# Series of the last hour in the store (the hourly ones were sent once, at start).
series = ["backup_last_size_bytes", "db_size_bytes", "db_table_size_bytes", "bitrix_core_info",
          "php_version_info", "mysql_version_info", "nginx_connections", "apache_workers",
          "push_server_up", "push_server_clients", "mysql_up", "bitrix_agents_overdue", "log_lines_total"]
names = {c for c, _ in seen}
missing = [c for c in want if c not in names]
for name in series:
    with urllib.request.urlopen(f"{sys.argv[2]}?name={name}") as r:
        if not json.load(r).get("series"):
            missing.append(name)
print(f"checks_active={len(want) - len([c for c in want if c not in names])}/{len(want)} "
      f"series_present={len(series) - len([s for s in series if s in missing])}/{len(series)}")
if missing:
    print("MISSING (the figures above do not cover every check): " + " ".join(missing))
    sys.exit(1)
PY
fi

node_exporter=$(command -v prometheus-node-exporter || command -v node_exporter || true)
scrapes=$((duration / interval))
exec 3>/dev/null
ne_ms=0
if [ -z "$node_exporter" ]; then
    echo "node_exporter: not installed (apt-get install prometheus-node-exporter for the anchor)"
else
    ne_port=$(port)
    "$node_exporter" --web.listen-address="127.0.0.1:$ne_port" --log.level=error 2>/dev/null &
    ne=$!
    pids+=($ne)
    sleep 2
    ne_ms=$(exporter_ms_per_scrape "$ne_port" "$ne")
    echo "node_exporter: rss_kib=$(rss_kib "$ne") cpu_ms_per_scrape=$ne_ms scrapes=$scrapes"
    echo "node_exporter_cpu_ms_per_scrape=$ne_ms"
    awk -v a="$agent_ms_per_tick" -v n="$ne_ms" 'BEGIN { if (n > 0) printf "ratio agent_tick/node_exporter_scrape=%.3f\n", a / n }'
fi

exporter=$(command -v prometheus-mysqld-exporter || command -v mysqld_exporter || true)
if [ -n "$exporter" ] && [ -n "${sock:-}" ]; then
    me_port=$(port)
    DATA_SOURCE_NAME="b24watch:bench@unix($sock)/" "$exporter" --web.listen-address="127.0.0.1:$me_port" \
        --log.level=error 2>/dev/null &
    me=$!
    pids+=($me)
    sleep 2
    me_ms=$(exporter_ms_per_scrape "$me_port" "$me")
    echo "mysqld_exporter: rss_kib=$(rss_kib "$me") cpu_ms_per_scrape=$me_ms scrapes=$scrapes"
    echo "mysqld_exporter_cpu_ms_per_scrape=$me_ms"
    awk -v a="$agent_ms_per_tick" -v n="$ne_ms" -v m="$me_ms" \
        'BEGIN { printf "ratio agent_tick/(node_exporter+mysqld_exporter scrape)=%.3f (budget 0.25)\n", a / (n + m) }'
fi
if [ "${checks_missing:-0}" = 1 ]; then
    echo "bench-agent: some checks did not run (see MISSING above): the figures do not cover every check" >&2
    exit 1
fi
