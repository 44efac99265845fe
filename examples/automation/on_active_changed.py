#!/usr/bin/env python3
"""React to changes of a site's active software update point, from the SUP control plane's
public event API (CloudEvents 1.0 JSON on NATS JetStream), with nats-py.

    pip install nats-py
    on_active_changed.py --url nats://nats:4222 --user automation --password-env SUP_NATS_AUTOMATION_PASSWORD follow

`follow` keeps a durable consumer ("oncall") on stream SUP_CLOUDEVENTS, filtered to
sup.ce.*.active_changed, so a restart resumes where it stopped; for each change it prints what an
on-call hook would do with it, then the CloudEvent as one JSON line. `replay` reads the JSON stream
from the start with a durable consumer (removed afterwards) and checks it against the protobuf
stream, message by message: every event, in the same order, with no gap. `refusals` shows what the
automation account may not do: publish a command, write a KV bucket, or take events from a
service's consumer.

The automation account's replies come to its own inbox prefix, _INBOX_automation.
"""

import argparse
import asyncio
import json
import os
import sys

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy

CLOUD_EVENTS = "SUP_CLOUDEVENTS"
EVENTS = "SUP_EVENTS"
INBOX = b"_INBOX_automation"


def emit(obj):
    print(json.dumps(obj), flush=True)


async def connect(args, errors=None):
    async def on_error(e):
        if errors is not None:
            errors.append(str(e))

    return await nats.connect(
        args.url,
        user=args.user,
        password=os.environ.get(args.password_env, "") if args.password_env else None,
        error_cb=on_error,
        allow_reconnect=False,
        inbox_prefix=INBOX,
    )


async def follow(args):
    nc = await connect(args)
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "sup.ce.*.active_changed",
        durable=args.durable,
        stream=CLOUD_EVENTS,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        inbox_prefix=INBOX + b".",
    )
    emit({"ready": True})
    deadline = asyncio.get_running_loop().time() + args.timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            msgs = await sub.fetch(10, timeout=1)
        except NatsTimeout:
            continue
        for m in msgs:
            ce = json.loads(m.data)
            change = ce["data"]["active_changed"]
            print(
                f"ticket: site {ce['subject']}: the active {change.get('slot', '')} SUP is now "
                f"{change.get('target', '')} (was {change.get('previous', '') or 'none'}), "
                f"epoch {ce['data'].get('epoch')}, because {change.get('cause', '')}",
                file=sys.stderr,
            )
            emit({"cloudevent": ce, "content_type": (m.headers or {}).get("Content-Type")})
            await m.ack()
            if args.until and change.get("target") == args.until:
                await nc.close()
                return 0
    await nc.close()
    return 0 if not args.until else 1


async def read_all(js, durable, count):
    """The first `count` CloudEvents, through a durable pull consumer from the start."""
    sub = await js.pull_subscribe(
        "sup.ce.>",
        durable=durable,
        stream=CLOUD_EVENTS,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        inbox_prefix=INBOX + b".",
    )
    out = []
    while len(out) < count:
        try:
            msgs = await sub.fetch(min(256, count - len(out)), timeout=5)
        except NatsTimeout:
            break
        for m in msgs:
            out.append((m.metadata.sequence.stream, m.data))
            await m.ack()
    await js.delete_consumer(CLOUD_EVENTS, durable)
    return out


async def replay(args):
    nc = await connect(args)
    js = nc.jetstream()
    # Events keep coming; the JSON stream follows the protobuf one a moment later. Everything
    # the JSON stream holds now must be the protobuf stream's first events, in the same order.
    count = (await js.stream_info(CLOUD_EVENTS)).state.messages
    cloud = await read_all(js, args.durable, count)
    ids = [json.loads(data)["id"] for _, data in cloud]
    sources = []
    for seq in range(1, len(cloud) + 1):
        m = await js.get_msg(EVENTS, seq)
        sources.append((m.headers or {}).get("Nats-Msg-Id"))
    per_site = {}
    for _, data in cloud:
        ce = json.loads(data)
        per_site.setdefault(ce["subject"], []).append(ce["id"])
    emit(
        {
            "stored": count,
            "read": len(cloud),
            "no_gap": [seq for seq, _ in cloud] == list(range(1, count + 1)),
            "same_order": ids == sources,
            "sites": sorted(per_site),
            "ids": ids,
        }
    )
    await nc.close()
    return 0 if len(cloud) == count else 1


async def refusals(args):
    errors = []
    nc = await connect(args, errors)
    js = nc.jetstream()
    attempts = [
        # A command for the provisioner, a write of an active slot.
        (f"sup.cmd.provisioner.{args.site}", lambda s: js.publish(s, b"from automation", timeout=2)),
        (f"$KV.sup_active.{args.site}.intranet", lambda s: js.publish(s, b"from automation", timeout=2)),
        # Taking the coordinator's events from its own consumer.
        ("$JS.API.CONSUMER.MSG.NEXT.SUP_EVENTS.coordinator-events",
         lambda s: nc.request(s, b'{"batch":1}', timeout=2)),
    ]
    for subject, attempt in attempts:
        try:
            await attempt(subject)
            emit({"subject": subject, "refused": False})
        except Exception as e:  # any failure to store it: no ack came
            await asyncio.sleep(0.5)
            # nats-py reports the server's "Permissions Violation" in lower case.
            said = [x for x in errors if subject.lower() in x.lower()]
            emit({"subject": subject, "refused": True, "error": type(e).__name__, "server": said})
    await nc.close()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    p.add_argument("--user", default="automation")
    p.add_argument("--password-env", default="SUP_NATS_AUTOMATION_PASSWORD",
                   help="the environment variable that holds the password")
    p.add_argument("--durable", default="oncall", help="the durable consumer's name")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds")
    p.add_argument("--site", default="CEN", help="refusals: the site to try it on")
    p.add_argument("--until", help="follow: stop once this server becomes active")
    p.add_argument("mode", choices=["follow", "replay", "refusals"])
    args = p.parse_args()
    run = {"follow": follow, "replay": replay, "refusals": refusals}[args.mode]
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
