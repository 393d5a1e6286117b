#!/usr/bin/env python3
"""Writes a synthetic task-event file of about SIZE_MB megabytes.

    gen_events.py FORMAT SIZE_MB OUT      (FORMAT: csv, ndjson or xml)

Rows look like the demo files: ids, a task, an event type, a status, a user,
a source system, an ISO-8601 time, a duration, an attempt and a small JSON
payload (quoted in CSV, with a comma inside). Deterministic: the same
arguments give the same bytes.
"""
import json
import random
import sys

fmt, size_mb, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
target = size_mb * 1_000_000
rnd = random.Random(42)
types = ["created", "assigned", "started", "completed", "failed", "retried"]
statuses = ["open", "in_progress", "done", "error"]
systems = ["jira", "asana", "linear", "github"]

def rows():
    i = 0
    while True:
        i += 1
        yield {
            "event_id": f"ev-{i:010d}",
            "task_id": f"task-{rnd.randrange(1_000_000):07d}",
            "event_type": rnd.choice(types),
            "status": rnd.choice(statuses),
            "user_id": f"user-{rnd.randrange(50_000)}",
            "source_system": rnd.choice(systems),
            "occurred_at": f"2026-03-{rnd.randrange(1, 29):02d}T{rnd.randrange(24):02d}:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}Z",
            "duration_ms": str(rnd.randrange(10_000_000)),
            "attempt": str(rnd.randrange(1, 5)),
            "payload": json.dumps({"priority": rnd.choice(["low", "high"]), "note": "a, b"}),
        }

with open(out, "w", encoding="utf-8", newline="") as f:
    written = 0
    cols = ["event_id", "task_id", "event_type", "status", "user_id", "source_system",
            "occurred_at", "duration_ms", "attempt", "payload"]
    if fmt == "csv":
        head = ",".join(cols) + "\n"
    elif fmt == "xml":
        head = '<?xml version="1.0" encoding="UTF-8"?>\n<export><events>\n'
    else:
        head = ""
    f.write(head)
    written += len(head)
    buf = []
    for r in rows():
        if fmt == "csv":
            payload = '"' + r["payload"].replace('"', '""') + '"'
            line = ",".join([r[c] for c in cols[:-1]] + [payload]) + "\n"
        elif fmt == "ndjson":
            line = json.dumps(r) + "\n"
        else:
            attrs = f'<event id="{r["event_id"]}">'
            inner = "".join(f"<{c}>{r[c].replace('&', '&amp;').replace('<', '&lt;')}</{c}>" for c in cols[1:])
            line = attrs + inner + "</event>\n"
        buf.append(line)
        written += len(line)
        if len(buf) >= 10_000:
            f.write("".join(buf))
            buf.clear()
        if written >= target:
            break
    f.write("".join(buf))
    if fmt == "xml":
        f.write("</events></export>\n")
