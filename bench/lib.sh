# bench/lib.sh — what the bench scripts share; sourced after they define
# die (how they stop) and LOADGEN (the cairn-loadgen binary).

# Ports below the kernel's ephemeral range: an outgoing connection's local port
# in that range can make the server's bind fail (a likely cause of a CI run
# whose first data-plane server never became ready).
EPHEMERAL_LO=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPHEMERAL_LO" -gt 11000 ] 2>/dev/null || EPHEMERAL_LO=32768

# free_port: a port nothing listens on, below the ephemeral range.
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((10000 + RANDOM % (EPHEMERAL_LO - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free port found"
}

# wait_ready PORT PID LOG [PATH]: polls PATH (default /health/live) until it
# answers 2xx (30 s deadline); dies with the log's tail if PID exits first.
wait_ready() {
  local port=$1 pid=$2 log=$3 path=${4:-/health/live}
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$log" >&2 || true; die "the process for port $port exited during startup"; }
    "$LOADGEN" --url "http://127.0.0.1:$port" --op probe --path "$path" && return 0
    sleep 0.1
  done
  tail -n 30 "$log" >&2 || true
  die "nothing ready on port $port after 30 s"
}

# median2: the median of the numbers on stdin (words; anything else is
# skipped), two decimals; NA when there are none.
median2() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# loadgen_field NAME LINE: the number after " NAME=" in a cairn-loadgen line.
loadgen_field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }
# ratio A B: A / B as "1.23x", "-" when either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "NA" && b != "NA" && b > 0) printf "%.2fx", a / b; else print "-" }'; }
