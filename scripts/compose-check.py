#!/usr/bin/env python3
"""Checks the composed stack from supctl's JSON: `status` (every declared role in its state,
one holder per slot) or `events` (active-slot epochs only grow per slot, never two holders of
one epoch). Reads the JSON on stdin; exits 1 with the reason when a check fails."""
import json
import sys

WANT = {  # the example hierarchy's declared state
    ("CEN", "cen-sup01.corp.example.com"): "active",
    ("CEN", "cen-sup02.corp.example.com"): "ready",
    ("CEN", "cen-inet01.corp.example.com"): "active",
    ("CH1", "ch1-nlb-n1.corp.example.com"): "active",
    ("CH1", "ch1-nlb-n2.corp.example.com"): "active",
    ("CH2", "ch2-sup01.corp.example.com"): "active",
}

INTRANET_CANDIDATES = {"cen-sup01.corp.example.com", "cen-sup02.corp.example.com"}


def status(doc, expect_active=None):
    problems = []
    for site in doc["sites"]:
        active = site.get("active") or {}
        for slot in ("intranet", "internet"):
            holder = active.get(slot)
            holders = [r["server"] for r in site["roles"]
                       if r["state"] == "active" and r.get("slot") == slot]
            if holder is None:
                if holders:
                    problems.append(f"{site['code']} {slot}: roles active without a holder: {holders}")
                continue
            if not holder["nlb"] and holders not in ([], [holder["target"]]):
                problems.append(f"{site['code']} {slot}: holder {holder['target']} but active roles {holders}")
            if holder["nlb"] and len(holders) > 2:
                problems.append(f"{site['code']} {slot}: too many active NLB nodes {holders}")
        for r in site["roles"]:
            want = WANT.get((site["code"], r["server"]))
            if expect_active and r["server"] in INTRANET_CANDIDATES:
                # The central site's intranet slot was moved: the chosen one holds it, the
                # other is a ready standby.
                want = "active" if r["server"] in expect_active else "ready"
            if want and r["state"] != want:
                problems.append(f"{site['code']} {r['server']}: {r['state']}, want {want}")
    return problems


def events(lines):
    problems = []
    last = {}
    holders = {}
    for line in lines:
        e = json.loads(line)
        if e["kind"] != "active_changed":
            continue
        key = (e["site"], e["payload"]["slot"])
        epoch = e["epoch"]
        if key in last and epoch <= last[key]:
            problems.append(f"{key}: epoch {epoch} after {last[key]}")
        last[key] = max(epoch, last.get(key, 0))
        target = e["payload"]["target"]
        if holders.setdefault((key, epoch), target) != target:
            problems.append(f"{key} epoch {epoch}: two holders {holders[(key, epoch)]} and {target}")
    return problems, last


def main():
    what = sys.argv[1]
    if what == "status":
        expect = set(sys.argv[2:]) or None
        problems = status(json.load(sys.stdin), expect)
        detail = ""
    else:
        problems, last = events([l for l in sys.stdin if l.strip()])
        detail = " ".join(f"{s}/{slot}@{e}" for (s, slot), e in sorted(last.items()))
    if problems:
        print("; ".join(problems))
        sys.exit(1)
    print(f"ok {detail}".strip())


if __name__ == "__main__":
    main()
