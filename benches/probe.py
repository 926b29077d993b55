#!/usr/bin/env python3
"""Decisive sample -> decision, for benches/replicas.sh: POSTs one over-quota
memory sample of a dyno not seen before to POST_PORT (as dynoguard-loadtest's
probe does) and times until the deciding process (WATCH_PORT, /metrics) counts
one more `dynoguard_events_total{kind="over_threshold"}`. Prints
"p50_ms max_ms" over N probes (each given up after 3 s).

    probe.py POST_PORT WATCH_PORT PASSWORD N FIRST
"""
import base64, sys, time, urllib.request

post_port, watch_port, pw, n, first = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
auth = "Basic " + base64.b64encode(f"x:{pw}".encode()).decode()

def decided():
    req = urllib.request.Request(f"http://127.0.0.1:{watch_port}/metrics", headers={"Authorization": auth})
    for line in urllib.request.urlopen(req, timeout=5).read().decode().splitlines():
        if line.startswith('dynoguard_events_total{kind="over_threshold"}'):
            return float(line.split()[-1])
    return 0.0

times = []
for i in range(n):
    k = first + i
    payload = (f"<134>1 2024-01-01T00:00:00.000000+00:00 host heroku probe{k}.1 - source=probe{k}.1 "
               f"dyno=heroku.1.{k:08}-0000-0000-0000-000000000000 "
               "sample#memory_total=700.00MB sample#memory_quota=512.00MB")
    body = f"{len(payload) + 1} {payload}\n".encode()
    before = decided()
    t = time.monotonic()
    req = urllib.request.Request(f"http://127.0.0.1:{post_port}/logs", data=body, method="POST",
                                 headers={"Authorization": auth, "Content-Type": "application/logplex-1",
                                          "Logplex-Msg-Count": "1"})
    urllib.request.urlopen(req, timeout=5).read()
    while decided() == before and time.monotonic() - t < 3:
        time.sleep(0.005)
    times.append((time.monotonic() - t) * 1e3)
times.sort()
print(f"{times[len(times) // 2]:.1f} {times[-1]:.1f}")
