#!/usr/bin/env python3
"""Measures issue 9's figures against a real `dynoguard serve` on loopback.

    cargo build --release
    python3 tools/hardening_figures.py [--bin target/release/dynoguard]

Starts a fake Platform API (a tiny hanging/slow HTTP server here) and dynoguard, then:
  1. RSS while 40 clients with a wrong password announce 10 MiB - 1 bodies and stall;
  2. open descriptors while 10,000 bare TCP connections are attempted;
  3. DELETEs per incident when the API accepts restarts and never answers;
  4. shutdown time after SIGTERM with that hanging API.
Everything talks to 127.0.0.1 only, and every loop is bounded.
"""
import argparse, base64, os, signal, socket, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DELETES = []

class HangingApi(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _json(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/apps/") and "/dynos/" in self.path:
            time.sleep(120)  # the evidence call hangs too
            return
        self._json(200, '{"remaining": 4500}' if "rate-limits" in self.path else "[]")

    def do_DELETE(self):
        DELETES.append(time.time())
        time.sleep(120)  # accepts, never answers


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def frame(payload):
    return f"{len(payload) + 1} {payload}\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/dynoguard")
    args = ap.parse_args()

    api = ThreadingHTTPServer(("127.0.0.1", 0), HangingApi)
    api.daemon_threads = True
    threading.Thread(target=api.serve_forever, daemon=True).start()
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    tmp = tempfile.mkdtemp()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PORT": str(port),
        "APP_ID_OR_NAME": "todo",
        "AUTH_TOKEN": "tok",
        "DRAIN_PASSWORD": "right",
        "DATABASE_URL": f"sqlite://{tmp}/d.db",
        "HEROKU_API_URL": f"http://127.0.0.1:{api.server_address[1]}",
        "DYNOGUARD_API_TIMEOUT": "60s",
        "RUST_LOG": "warn",
    }
    proc = subprocess.Popen([args.bin, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); break
        except OSError:
            time.sleep(0.05)
    time.sleep(0.5)
    pid = proc.pid
    print(f"idle: RSS {rss_kb(pid) / 1024:.1f} MB, {fds(pid)} descriptors")

    # 1. 40 unauthenticated 10 MiB uploads that stall after the headers.
    wrong = base64.b64encode(b"x:wrong").decode()
    socks, answered = [], 0
    for _ in range(40):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(f"POST /logs HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {wrong}\r\nContent-Length: {10*1024*1024-1}\r\n\r\n".encode())
        c.sendall(b"x" * 65536)
        socks.append(c)
    time.sleep(1.0)
    for c in socks:
        c.settimeout(1.0)
        try:
            if c.recv(64).startswith(b"HTTP/1.1 401"):
                answered += 1
        except OSError:
            pass
    print(f"40 unauthenticated 10 MiB uploads: RSS {rss_kb(pid) / 1024:.1f} MB, {answered}/40 answered 401 before the body")
    for c in socks:
        c.close()

    # 2. 10,000 bare connects (the server keeps at most its connection cap).
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20_000), hard))
    held, peak, failed = [], 0, 0
    for i in range(10_000):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))
        except OSError:
            failed += 1
        if i % 1000 == 999:
            peak = max(peak, fds(pid))
    time.sleep(0.5)
    peak = max(peak, fds(pid))
    ok = b""
    try:
        h = socket.create_connection(("127.0.0.1", port), timeout=2)
        time.sleep(11)  # header timeout (10 s) frees the bare ones
        h.close()
        h = socket.create_connection(("127.0.0.1", port), timeout=2)
        h.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        h.settimeout(3)
        ok = h.recv(64)
    except OSError:
        pass
    print(f"10,000 bare connects ({len(held)} opened, {failed} refused client-side): peak {peak} descriptors in dynoguard; /healthz afterwards: {ok[:15]!r}")
    for c in held:
        c.close()

    # 3. An API that accepts restarts and never answers: DELETEs per incident.
    right = base64.b64encode(b"x:right").decode()
    now = time.time()
    for i in range(8):
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 200 + i * 20)) + ".000000+00:00"
        body = frame(f"<134>1 {ts} host heroku web.1 - source=web.1 dyno=heroku.1.aaaaaaaa-0000-0000-0000-000000000001 sample#memory_total=700.00MB sample#memory_quota=512.00MB")
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(f"POST /logs HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {right}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
        c.recv(64); c.close()
        time.sleep(1.0)
    print(f"hanging API, 8 over-quota samples of one instance over 8 s: {len(DELETES)} DELETE(s)")

    # 4. SIGTERM while the DELETE hangs.
    t = time.time()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    print(f"SIGTERM with a hanging API: exited {code} after {time.time() - t:.1f} s (deadline 25 s)")


if __name__ == "__main__":
    sys.exit(main())
