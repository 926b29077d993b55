#!/usr/bin/env python3
"""Generate realistic Heroku HTTPS log-drain (logplex) request bodies.

Each body is a batch of octet-counted RFC 5424 frames, exactly as Heroku's
logplex sends them to an HTTPS drain (Content-Type: application/logplex-1):

    <N> <PRI>1 <timestamp> host <app> <procid> - <message>\n

where <N> is the exact byte length of everything after the space that follows
it (including the trailing newline, as logplex does).

Line mix (defaults): ~5% runtime-metrics memory samples (log-runtime-metrics,
`source=web.N dyno=heroku.<id>.<uuid> sample#memory_total=...` -- the 9-token
form), ~5% load-average samples, ~50% router lines, rest application lines.
Memory samples are spread over --dynos dynos (web.1 .. web.N) and are below
the memory quota unless --over-frac is given.

Output formats:
  nul    bodies separated by a single NUL byte (easy to split in wrk/Lua)
  dir    one file per body (body-000000.txt, ...) inside --out (a directory)
  lines  newline-separated syslog lines WITHOUT octet framing, in the
         "heroku logs --tail" / log-session style
         (`2013-08-22T16:39:22.919536+00:00 heroku[web.2]: source=web.2 ...`)

A JSON sidecar <out>.meta.json records counts (frames per body, memory samples,
over-threshold samples) so that lines/s can be derived from requests/s.

Deterministic for a given --seed.  Pure standard library.

Origin: a copy of the team's shared `tools/gen_drain.py` (outside this
repository), kept here so that `benches/end_to_end.sh` stands alone. Added in
this copy: `--worst-case` (issue 21) -- 10,000 dynos, half of all lines memory
samples, and every timestamp inside one hour of log time beginning with the
fixed stamp `2023-02-13T22` (EPOCH_STAMP). A load script that replaces that
13-byte stamp by a later hour each time it starts over the bodies
(`benches/drain.lua`, DRAIN_ADVANCE=1) sends bodies whose samples are never
stale: the frame lengths do not change, and each pass is an hour later.
"""

import argparse
import datetime as _dt
import json
import os
import random
import sys
import uuid

EPOCH_STAMP = "2023-02-13T22"  # date and hour of every timestamp with --worst-case
PRI_RUNTIME = 134   # local0.info   (heroku runtime metrics / dyno manager)
PRI_ROUTER = 158    # local3.info   (heroku router)
PRI_APP = 190       # local7.info   (app output)

METHODS = ["GET"] * 8 + ["POST", "PUT", "DELETE", "PATCH"]
PATHS = ["/", "/health", "/api/v1/users", "/api/v1/orders/{id}", "/assets/app-{hex}.js",
         "/login", "/search?q=widgets&page={n}", "/webhooks/stripe", "/dashboard",
         "/api/v1/items/{id}/comments"]
STATUSES = [200] * 40 + [201, 204, 301, 302, 304, 304, 400, 401, 403, 404, 404, 422, 500, 503]
APP_MSGS = [
    'I, [{ts} #{pid}]  INFO -- : [{rid}] Started {method} "{path}" for {ip} at {ts2} +0000',
    'I, [{ts} #{pid}]  INFO -- : [{rid}] Processing by UsersController#index as JSON',
    'I, [{ts} #{pid}]  INFO -- : [{rid}]   Parameters: {{"page"=>"{n}", "per"=>"25"}}',
    'I, [{ts} #{pid}]  INFO -- : [{rid}] Completed {status} OK in {ms}ms (Views: {v}ms | ActiveRecord: {ar}ms | Allocations: {alloc})',
    'D, [{ts} #{pid}] DEBUG -- : [{rid}]   User Load ({ar}ms)  SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2  [["id", {n}], ["LIMIT", 1]]',
    'W, [{ts} #{pid}]  WARN -- : [{rid}] Rack::Timeout: slow request {path} {ms}ms',
    '{ip} - - [{clf}] "{method} {path} HTTP/1.1" {status} {bytes} "-" "Mozilla/5.0 (X11; Linux x86_64)"',
    'source=web measure#sidekiq.queue.latency={ms}ms sample#sidekiq.queue.size={n}',
]


class Gen:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.app_host = f"{args.app}.herokuapp.com"
        if args.worst_case:
            # The hour starts at its first microsecond: the whole run fits in it.
            self.t = _dt.datetime(2023, 2, 13, 22, 0, 0, 0, tzinfo=_dt.timezone.utc)
        else:
            self.t = _dt.datetime(2023, 2, 13, 22, 12, 51, 822974, tzinfo=_dt.timezone.utc)
        # stable dyno identity per process: dyno=heroku.<app_numeric_id>.<uuid>
        self.app_num = self.rng.randint(10_000_000, 399_999_999)
        self.dyno_ids = {}
        for i in range(1, args.dynos + 1):
            u = uuid.UUID(int=self.rng.getrandbits(128), version=4)
            self.dyno_ids[f"{args.proc_type}.{i}"] = f"heroku.{self.app_num}.{u}"
        self.dyno_mem = {d: self.rng.uniform(120.0, args.quota * 0.85) for d in self.dyno_ids}
        self.counts = {"memory": 0, "memory_over": 0, "load": 0, "router": 0, "app": 0}

    # ---- helpers -------------------------------------------------------
    def tick(self):
        self.t += _dt.timedelta(microseconds=self.rng.randint(50, 4000))
        stamp = self.t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"
        if self.a.worst_case and not stamp.startswith(EPOCH_STAMP):
            sys.exit("--worst-case: too many frames for one hour of log time")
        return stamp

    def rid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def ip(self):
        r = self.rng
        return f"{r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"

    def dyno(self):
        return f"{self.a.proc_type}.{self.rng.randint(1, self.a.dynos)}"

    def path(self):
        r = self.rng
        return r.choice(PATHS).format(id=r.randint(1, 99999), hex="%032x" % r.getrandbits(128),
                                      n=r.randint(1, 50))

    # ---- line kinds: return (pri, appname, procid, message) ------------
    def memory_line(self, over=False):
        d = self.dyno()
        m = self.dyno_mem[d]
        m = max(60.0, min(self.a.quota * 0.95, m + self.rng.uniform(-8.0, 8.0)))
        self.dyno_mem[d] = m
        total = self.rng.uniform(self.a.quota * 1.05, self.a.quota * 1.6) if over else m
        swap = (total - self.a.quota) if total > self.a.quota else 0.0
        rss = total * self.rng.uniform(0.85, 0.97)
        cache = max(0.0, total - rss - swap)
        pgin = self.rng.randint(1000, 900000)
        pgout = self.rng.randint(100, pgin)
        msg = (f"source={d} dyno={self.dyno_ids[d]} sample#memory_total={total:.2f}MB "
               f"sample#memory_rss={rss:.2f}MB sample#memory_cache={cache:.2f}MB "
               f"sample#memory_swap={swap:.2f}MB sample#memory_pgpgin={pgin}pages "
               f"sample#memory_pgpgout={pgout}pages sample#memory_quota={self.a.quota:.2f}MB")
        self.counts["memory"] += 1
        if over:
            self.counts["memory_over"] += 1
        return PRI_RUNTIME, "heroku", d, msg

    def load_line(self):
        d = self.dyno()
        r = self.rng
        msg = (f"source={d} dyno={self.dyno_ids[d]} sample#load_avg_1m={r.uniform(0, 2):.2f} "
               f"sample#load_avg_5m={r.uniform(0, 1.5):.2f} sample#load_avg_15m={r.uniform(0, 1):.2f}")
        self.counts["load"] += 1
        return PRI_RUNTIME, "heroku", d, msg

    def router_line(self):
        r = self.rng
        status = r.choice(STATUSES)
        at = "error" if status >= 500 else "info"
        extra = ' code=H12 desc="Request timeout"' if status == 503 else ""
        msg = (f'at={at}{extra} method={r.choice(METHODS)} path="{self.path()}" host={self.app_host} '
               f'request_id={self.rid()} fwd="{self.ip()}" dyno={self.dyno()} '
               f'connect={r.randint(0, 3)}ms service={r.randint(1, 900)}ms status={status} '
               f'bytes={r.randint(100, 60000)} protocol=https')
        self.counts["router"] += 1
        return PRI_ROUTER, "heroku", "router", msg

    def app_line(self):
        r = self.rng
        ts = self.t.strftime("%Y-%m-%dT%H:%M:%S.%f")
        msg = r.choice(APP_MSGS).format(
            ts=ts, ts2=self.t.strftime("%Y-%m-%d %H:%M:%S"), pid=r.randint(2, 64),
            rid=self.rid(), method=r.choice(METHODS), path=self.path(), ip=self.ip(),
            n=r.randint(1, 500), status=r.choice([200, 200, 200, 201, 404]),
            ms=r.randint(1, 900), v=r.randint(0, 200), ar=r.randint(0, 100),
            alloc=r.randint(500, 90000), bytes=r.randint(100, 60000),
            clf=self.t.strftime("%d/%b/%Y:%H:%M:%S +0000"))
        self.counts["app"] += 1
        return PRI_APP, "app", self.dyno(), msg

    def line(self):
        x = self.rng.random()
        a = self.a
        if x < a.mem_frac:
            return self.memory_line(over=self.rng.random() < a.over_frac)
        x -= a.mem_frac
        if x < a.load_frac:
            return self.load_line()
        x -= a.load_frac
        if x < a.router_frac:
            return self.router_line()
        return self.app_line()

    # ---- framing -------------------------------------------------------
    def frame(self):
        pri, appname, procid, msg = self.line()
        ts = self.tick()
        payload = f"<{pri}>1 {ts} host {appname} {procid} - {msg}\n".encode("utf-8")
        return str(len(payload)).encode("ascii") + b" " + payload

    def session_line(self):
        """log-session / `heroku logs` style line (no octet framing)."""
        pri, appname, procid, msg = self.line()
        ts = self.tick()
        return f"{ts} {appname}[{procid}]: {msg}\n".encode("utf-8")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output file (nul/lines) or directory (dir)")
    p.add_argument("--format", choices=["nul", "dir", "lines"], default="nul")
    p.add_argument("--bodies", type=int, default=2000, help="number of POST bodies (nul/dir)")
    p.add_argument("--frames", type=int, default=100, help="frames per body (nul/dir)")
    p.add_argument("--lines", type=int, default=200000, help="number of lines (lines format)")
    p.add_argument("--dynos", type=int, default=50)
    p.add_argument("--proc-type", default="web")
    p.add_argument("--app", default="example-app")
    p.add_argument("--quota", type=float, default=512.0, help="memory quota in MB")
    p.add_argument("--mem-frac", type=float, default=0.05)
    p.add_argument("--load-frac", type=float, default=0.05)
    p.add_argument("--router-frac", type=float, default=0.50)
    p.add_argument("--over-frac", type=float, default=0.0,
                   help="fraction of memory samples above the quota (default 0: all below)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--worst-case", action="store_true",
                   help="10,000 dynos, 50%% memory samples, all timestamps within the hour "
                        "EPOCH_STAMP (so a load script can advance them; see the docstring)")
    a = p.parse_args(argv)
    if a.worst_case:
        a.dynos, a.mem_frac = 10_000, 0.5

    g = Gen(a)
    meta = {"format": a.format, "seed": a.seed, "dynos": a.dynos, "quota_mb": a.quota}
    if a.worst_case:
        meta["epoch_stamp"] = EPOCH_STAMP
    total_bytes = 0
    if a.format == "lines":
        with open(a.out, "wb") as f:
            for _ in range(a.lines):
                b = g.session_line()
                total_bytes += len(b)
                f.write(b)
        meta.update(lines=a.lines)
    else:
        if a.format == "dir":
            os.makedirs(a.out, exist_ok=True)
            f = None
        else:
            f = open(a.out, "wb")
        for i in range(a.bodies):
            body = b"".join(g.frame() for _ in range(a.frames))
            assert b"\0" not in body
            total_bytes += len(body)
            if f is None:
                with open(os.path.join(a.out, f"body-{i:06d}.txt"), "wb") as bf:
                    bf.write(body)
            else:
                if i:
                    f.write(b"\0")
                f.write(body)
        if f is not None:
            f.close()
        meta.update(bodies=a.bodies, frames_per_body=a.frames, frames=a.bodies * a.frames)
    meta.update(bytes=total_bytes, counts=g.counts)
    meta_path = (a.out.rstrip("/") + ".meta.json")
    with open(meta_path, "w") as mf:
        json.dump(meta, mf, indent=2)
    print(json.dumps(meta), file=sys.stderr)


if __name__ == "__main__":
    main()
