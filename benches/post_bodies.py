#!/usr/bin/env python3
"""Posts a fixed number of drain bodies to a receiver, one at a time on one
keep-alive connection: the load for an instruction-count profile
(`valgrind --tool=callgrind`), where wall-clock speed does not matter.

    python3 benches/post_bodies.py --bodies /tmp/worst.nul --requests 2000 --advance \
        --port 5098 --auth dynoguard:secret

Same headers as benches/drain.lua (basic auth, Logplex-Msg-Count, a unique
Logplex-Frame-Id per request); --advance replaces the stamp 2023-02-13T22 of
`gen_drain.py --worst-case` bodies by one hour later on each pass. Exits 1 if
any answer is not 204.
"""

import argparse
import base64
import datetime as dt
import http.client
import sys

STAMP = b"2023-02-13T22"
BASE = dt.datetime(2023, 2, 13, 22, tzinfo=dt.timezone.utc)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bodies", required=True)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--port", type=int, default=5098)
    p.add_argument("--auth", default="dynoguard:secret")
    p.add_argument("--frames", default="100")
    p.add_argument("--advance", action="store_true")
    p.add_argument("--skip", type=int, default=0, help="start as if this many were sent")
    a = p.parse_args()
    bodies = open(a.bodies, "rb").read().split(b"\0")
    auth = "Basic " + base64.b64encode(a.auth.encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=120)
    bad = 0
    for n in range(a.skip, a.skip + a.requests):
        i, pass_ = n % len(bodies), n // len(bodies)
        body = bodies[i]
        if a.advance and pass_:
            stamp = (BASE + dt.timedelta(hours=pass_)).strftime("%Y-%m-%dT%H").encode()
            body = body.replace(STAMP, stamp)
        conn.request("POST", "/logs", body=body, headers={
            "Content-Type": "application/logplex-1",
            "Authorization": auth,
            "Logplex-Msg-Count": a.frames,
            "Logplex-Frame-Id": f"p-{n}",
        })
        r = conn.getresponse()
        r.read()
        if r.status != 204:
            bad += 1
    print(f"{a.requests} requests, {bad} not 204", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
