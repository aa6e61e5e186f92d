"""Write load, measurements and checks for bench/failover.sh (stdlib only;
run with /usr/bin/python3).

  failover.py write SERVERS PREFIX LOG WRITERS TIMEOUT MAX_SECONDS
      WRITERS threads PUT unique keys PREFIX/<thread>/<n> (value: the key)
      back to back until SIGTERM/SIGINT or MAX_SECONDS. SERVERS is
      host:port,host:port,...; thread t starts on server t mod n and moves
      to the next server after any failure (then pauses 5 ms). Every write
      appends one line to LOG:
          <send time> <answer time> <outcome> <server index 1..n> <key>
      (times: Unix seconds; outcome: ok = 200 `true`, http<status>, false,
      timeout (no answer within TIMEOUT s), err:<exception>).
  failover.py write-open SERVERS PREFIX LOG RATE TIMEOUT MAX_SECONDS
      Open loop: RATE writes per second, each of a new key PREFIX/<n> on a
      new connection in a thread of its own, to the servers in turn, until
      SIGTERM/SIGINT or MAX_SECONDS; logged like `write`. A request stuck
      in a server that has lost its leader delays no later write, so the
      first acknowledgement after a kill is seen within 1/RATE s whatever
      the servers do with requests they cannot serve.
  failover.py first-ack LOG OFFSET AFTER TIMEOUT
      Follows LOG from byte OFFSET until a write sent after Unix time AFTER
      is acknowledged; prints "<answer time> <server>"; exit 1 after
      TIMEOUT s without one.
  failover.py latest-ack LOG
      Prints the key of the latest acknowledged write.
  failover.py back SERVER LOG TIMEOUT
      After a restart: waits until SERVER names a leader and serves, from
      its local state, the latest write LOG shows acknowledged by then;
      prints that Unix time. Exit 1 after TIMEOUT s.
  failover.py verify LOG PREFIX SERVERS TIMEOUT
      Reads PREFIX/ (?recurse&stale) on every server until each holds every
      write LOG shows acknowledged, with its value, or TIMEOUT s pass;
      prints the result; exit 1 if any is missing.
  failover.py report LOG EVENTS LOGDIR
      The Markdown part of the report: one row per kill (EVENTS, written by
      failover.sh) and the summary, from LOG and the servers' logs in
      LOGDIR (n<i>.log).

The servers speak Beacon's KV API, or etcd's JSON gateway if the environment
has FAILOVER_API=etcd (see bench/lib/kvapi.py)."""
import http.client
import os
import re
import signal
import socket
import statistics
import sys
import threading
import time
from datetime import datetime, timezone

import kvapi

API = kvapi.API[os.environ.get("FAILOVER_API", "beacon")]


def parse_servers(s):
    out = []
    for hp in s.split(","):
        h, p = hp.rsplit(":", 1)
        out.append((h, int(p)))
    return out


# ---- write ------------------------------------------------------------------

def put_outcome(conn, key, body):
    method, path, data, headers = API.put_request(key, body)
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        return "http%d" % resp.status
    return "ok" if API.put_ok(resp.status, data) else "false"


def log_write(fd, lock, sent, outcome, srv, key):
    line = "%.6f %.6f %s %d %s\n" % (sent, time.time(), outcome, srv + 1, key)
    with lock:
        os.write(fd, line.encode())


def cmd_write(servers, prefix, log_path, writers, timeout, max_seconds):
    servers = parse_servers(servers)
    writers, timeout = int(writers), float(timeout)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = threading.Lock()

    def worker(t):
        srv, n, conn = t % len(servers), 0, None
        while not stop.is_set():
            n += 1
            key = "%s/%d/%d" % (prefix, t, n)
            body = key.encode()
            sent = time.time()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(*servers[srv],
                                                      timeout=timeout)
                outcome = put_outcome(conn, key, body)
            except socket.timeout:
                outcome = "timeout"
            except Exception as e:  # refused, reset, closed...
                outcome = "err:" + type(e).__name__
            log_write(fd, lock, sent, outcome, srv, key)
            if outcome != "ok":
                if conn is not None:
                    conn.close()
                    conn = None
                srv = (srv + 1) % len(servers)
                stop.wait(0.005)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(t,), daemon=True)
               for t in range(writers)]
    for th in threads:
        th.start()
    stop.wait(float(max_seconds))
    stop.set()
    for th in threads:
        th.join(timeout + 5)
    os.close(fd)


def cmd_write_open(servers, prefix, log_path, rate, timeout, max_seconds):
    servers = parse_servers(servers)
    period, timeout = 1.0 / float(rate), float(timeout)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    lock = threading.Lock()

    def one(srv, key):
        sent = time.time()
        try:
            conn = http.client.HTTPConnection(*servers[srv], timeout=timeout)
            try:
                outcome = put_outcome(conn, key, key.encode())
            finally:
                conn.close()
        except socket.timeout:
            outcome = "timeout"
        except Exception as e:
            outcome = "err:" + type(e).__name__
        log_write(fd, lock, sent, outcome, srv, key)

    end = time.monotonic() + float(max_seconds)
    n, nxt = 0, time.monotonic()
    threads = []
    while not stop.is_set() and time.monotonic() < end:
        n += 1
        th = threading.Thread(target=one, args=(n % len(servers),
                                                "%s/%d" % (prefix, n)))
        th.start()
        threads.append(th)
        threads = [t for t in threads if t.is_alive()]
        nxt += period
        stop.wait(max(0.0, nxt - time.monotonic()))
    for th in threads:
        th.join(timeout + 5)
    os.close(fd)


def parse_line(line):
    f = line.split()
    if len(f) != 5:
        return None
    try:
        return float(f[0]), float(f[1]), f[2], int(f[3]), f[4]
    except ValueError:
        return None


def read_log(path):
    with open(path) as f:
        return [r for r in map(parse_line, f) if r is not None]


# ---- first-ack / latest-ack -------------------------------------------------

def cmd_first_ack(log_path, offset, after, timeout):
    after, deadline = float(after), time.monotonic() + float(timeout)
    with open(log_path) as f:
        f.seek(int(offset))
        buf = ""
        while True:
            chunk = f.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split("\n")
                for line in lines:
                    r = parse_line(line)
                    if r and r[2] == "ok" and r[0] > after:
                        print("%.6f %d" % (r[1], r[3]))
                        return 0
            elif time.monotonic() > deadline:
                return 1
            else:
                time.sleep(0.005)


def cmd_latest_ack(log_path):
    key = latest_ack(log_path)
    if key is None:
        return 1
    print(key)
    return 0


def latest_ack(log_path):
    """The key of the latest acknowledged write in LOG, or None."""
    size = os.path.getsize(log_path)
    back = 1 << 16
    while True:
        with open(log_path) as f:
            f.seek(max(0, size - back))
            lines = f.read().split("\n")
        best = None
        for line in lines[1:] if size > back else lines:
            r = parse_line(line)
            if r and r[2] == "ok" and (best is None or r[1] > best[1]):
                best = r
        if best is not None:
            return best[4]
        if back >= size:
            return None
        back *= 4


def cmd_back(server, log_path, timeout):
    deadline = time.monotonic() + float(timeout)
    key = None
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(*parse_servers(server)[0], timeout=1)
            try:
                if key is None and API.leader_id(conn)[1]:
                    key = latest_ack(log_path)
                if key is not None and API.get_value(conn, key, local=True) is not None:
                    print("%.6f" % time.time())
                    return 0
            finally:
                conn.close()
        except Exception:
            pass
        time.sleep(0.02)
    return 1


# ---- verify -----------------------------------------------------------------

def cmd_verify(log_path, prefix, servers, timeout):
    servers = parse_servers(servers)
    recs = read_log(log_path)
    acked = {r[4] for r in recs if r[2] == "ok"}
    failed = {r[4] for r in recs if r[2] != "ok"}
    deadline = time.monotonic() + float(timeout)
    while True:
        missing, wrong, extra = [], [], []
        for host, port in servers:
            try:
                kv = API.fetch_prefix(host, port, prefix)
            except Exception as e:
                kv = {}
                print("  (%s:%d: %s)" % (host, port, e), file=sys.stderr)
            missing.append(sorted(k for k in acked if k not in kv))
            wrong.append(sorted(k for k in acked if k in kv and kv[k] != k))
            extra.append(len([k for k in failed if k in kv]))
        if not any(missing) and not any(wrong):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    ok = not any(missing) and not any(wrong)
    print("CHECKED %d" % len(acked))
    print("MISSING %s" % " ".join(str(len(m)) for m in missing))
    print("WRONG %s" % " ".join(str(len(w)) for w in wrong))
    print("FAILED_WRITES %d" % len(failed))
    print("FAILED_BUT_PRESENT %s" % " ".join(str(e) for e in extra))
    for i, (m, w) in enumerate(zip(missing, wrong)):
        for k in m[:10]:
            print("missing on n%d: %s" % (i + 1, k))
        for k in w[:10]:
            print("wrong value on n%d: %s" % (i + 1, k))
    return 0 if ok else 1


# ---- report -----------------------------------------------------------------

LEADER_RE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s+\S+\s+raft\s+leader of term (\d+)")


def elections(logdir, nodes):
    """(unix time, node, term) of every "leader of term" line."""
    out = []
    for i in nodes:
        with open(os.path.join(logdir, "n%d.log" % i)) as f:
            for line in f:
                m = LEADER_RE.match(line)
                if m:
                    t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
                    out.append((t.replace(tzinfo=timezone.utc).timestamp(),
                                i, int(m.group(2))))
    return sorted(out)


def ms(x):
    return "%.0f" % (x * 1000.0)


def cmd_report(log_path, events_path, logdir):
    recs = read_log(log_path)
    recs.sort(key=lambda r: r[0])
    events = []
    with open(events_path) as f:
        for line in f:
            k, node, kill, restart, back, new = line.split()
            events.append((int(k), int(node), float(kill), float(restart),
                           float(back), new))
    elec = elections(logdir, (1, 2, 3))
    rows, fo, caused = [], [], set(elec[:1])   # the initial election
    for idx, (k, node, kill, restart, back, new) in enumerate(events):
        nxt = events[idx + 1][2] if idx + 1 < len(events) else float("inf")
        acks = [r for r in recs if r[2] == "ok" and kill < r[0] < nxt]
        first = min(acks, key=lambda r: r[1]) if acks else None
        end = first[1] if first else restart
        fails = [r for r in recs if r[2] != "ok" and kill < r[1] <= end]
        kinds = {}
        for r in fails:
            kinds[r[2]] = kinds.get(r[2], 0) + 1
        won = [e for e in elec if kill < e[0] < nxt]
        caused.update(won[:1])
        if first:
            fo.append(first[1] - kill)
        rows.append([
            str(k), "n%d" % node,
            ms(won[0][0] - kill) if won else "-",
            "n%d (term %d)" % (won[0][1], won[0][2]) if won else new,
            "**%s**" % ms(first[1] - kill) if first else "**none**",
            "n%d" % first[3] if first else "-",
            ", ".join("%s %d" % kv for kv in sorted(kinds.items())) or "0",
            "%.1f" % (back - restart),
        ])
    head = ["kill", "killed leader", "new leader elected after (ms, its log)",
            "new leader", "failover (ms): kill → first ack", "first ack via",
            "failed writes in between", "killed node back after restart (s)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---:", "---", "---:", "---", "---:", "---",
                          "---", "---:"]) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    if fo:
        print("**Failover time** (kill → first write acknowledged `true`), "
              "%d kills: median **%s ms**, min %s ms, worst **%s ms**"
              % (len(fo), ms(statistics.median(fo)), ms(min(fo)), ms(max(fo))))
    else:
        print("**Failover time**: no kill was followed by an acknowledged write")
    n_ok = sum(1 for r in recs if r[2] == "ok")
    kinds = {}
    for r in recs:
        if r[2] != "ok":
            kinds[r[2]] = kinds.get(r[2], 0) + 1
    span = (recs[-1][1] - recs[0][0]) if recs else 0
    print()
    print("- writes: %d sent over %.0f s, %d acknowledged `true`, %d failed (%s)"
          % (len(recs), span, n_ok, len(recs) - n_ok,
             ", ".join("%s %d" % kv for kv in sorted(kinds.items())) or "none"))
    terms = [e[2] for e in elec]
    print("- elections won (\"leader of term\" log lines): %d (%s); "
          "expected %d (the initial one and one per kill); last term %s"
          % (len(elec), ", ".join("n%d %d" % (i, sum(1 for e in elec if e[1] == i))
                                  for i in (1, 2, 3)),
             len(events) + 1, max(terms) if terms else "-"))
    spurious = [e for e in elec if e not in caused]
    if spurious:
        print("- elections not caused by a kill (or a second one after a "
              "kill): " + ", ".join(
                  "n%d term %d at %s" % (e[1], e[2], datetime.fromtimestamp(
                      e[0], timezone.utc).strftime("%H:%M:%S.%f")[:-3])
                  for e in spurious))
    else:
        print("- no election other than the initial one and one per kill")
    return 0


def main(argv):
    cmds = {"write": (cmd_write, 6), "write-open": (cmd_write_open, 6),
            "first-ack": (cmd_first_ack, 4),
            "latest-ack": (cmd_latest_ack, 1), "back": (cmd_back, 3),
            "verify": (cmd_verify, 4),
            "report": (cmd_report, 3)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[1]][0](*argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
