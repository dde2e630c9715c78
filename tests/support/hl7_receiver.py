#!/usr/bin/env python3
"""An independent MLLP receiver for the HL7 tests (tests/hl7.rs).

Uses the `hl7` package (python-hl7, https://python-hl7.readthedocs.io): its asyncio MLLP server
(hl7.mllp) reads each framed message and hl7.parse parses it. For every message this script
checks the structure an IHE PCD-01 / PCD-04 consumer relies on, answers with an ACK made by
hl7's Message.create_ack, and appends what it parsed as one JSON line to --out:

    {"control_id", "type", "version", "profile", "sending", "receiving", "pid": {...},
     "location", "obr": {...}, "obx": [{...}], "notes": [...], "errors": [...], "ack"}

--tls-cert/--tls-key serve MLLP over TLS. --ack AA|AE|AR sets the answer; the file --ack-file, when it exists, overrides it (the test
changes the answer while the receiver runs). Prints "listening on PORT" once it listens.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys

import hl7
import hl7.mllp


def component(value, comp):
    """A component of an already stringified field (the ^ split done by hand, unescaped)."""
    parts = value.split("^")
    return parts[comp - 1] if comp - 1 < len(parts) else ""


def describe(msg):
    errors = []
    segs = [str(s[0]) for s in msg]
    msh = msg.segment("MSH")
    out = {
        "control_id": str(msh[10]),
        "type": str(msh[9]),
        "version": str(msh[12]),
        "profile": str(msh[21]),
        "sending": [str(msh[3]), str(msh[4])],
        "receiving": [str(msh[5]), str(msh[6])],
        "segments": segs,
    }
    if segs[:4] != ["MSH", "PID", "PV1", "OBR"]:
        errors.append("segments start %s, expected MSH PID PV1 OBR" % segs[:4])
    if out["version"] != "2.6":
        errors.append("version %r, expected 2.6" % out["version"])
    pid = msg.segment("PID")
    name = str(pid[5]) if len(pid) > 5 else ""
    out["pid"] = {
        "id": str(pid[3]) if len(pid) > 3 else "",
        "name": name,
        "label": msg.unescape(component(name, 1)),
    }
    pv1 = msg.segment("PV1")
    out["location"] = str(pv1[3]) if len(pv1) > 3 else ""
    obr = msg.segment("OBR")
    out["obr"] = {
        "placer": str(obr[2]) if len(obr) > 2 else "",
        "filler": str(obr[3]) if len(obr) > 3 else "",
        "service": str(obr[4]) if len(obr) > 4 else "",
        "time": str(obr[7]) if len(obr) > 7 else "",
    }
    obx = []
    notes = []
    for seg in msg:
        sid = str(seg[0])
        if sid == "NTE":
            notes.append(str(seg[3]) if len(seg) > 3 else "")
            continue
        if sid != "OBX":
            continue

        def f(n):
            return str(seg[n]) if len(seg) > n else ""

        code = f(3)
        o = {
            "set_id": f(1),
            "value_type": f(2),
            "code": component(code, 1),
            "name": component(code, 2),
            "system": component(code, 3),
            "sub_id": f(4),
            "value": f(5),
            "unit": f(6),
            "unit_code": component(f(6), 1),
            "unit_name": component(f(6), 2),
            "ucum": component(f(6), 4),
            "ucum_system": component(f(6), 6),
            "range": f(7),
            "flags": f(8),
            "status": f(11),
            "time": f(14),
            "equipment": f(18),
        }
        if o["value_type"] == "NM" and o["value"] != "":
            try:
                float(o["value"])
            except ValueError:
                errors.append("OBX %s: NM value %r is not a number" % (o["set_id"], o["value"]))
        if o["value_type"] == "NM" and o["status"] == "R" and o["value"] == "":
            errors.append("OBX %s: status R without a value" % o["set_id"])
        if o["value_type"] == "NM" and o["status"] == "X" and o["value"] != "":
            errors.append("OBX %s: status X with a value" % o["set_id"])
        if o["system"] != "MDC":
            errors.append("OBX %s: code system %r, expected MDC" % (o["set_id"], o["system"]))
        obx.append(o)
    if not obx:
        errors.append("no OBX")
    out["obx"] = obx
    out["notes"] = notes
    out["errors"] = errors
    return out


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ack", default="AA", choices=["AA", "AE", "AR"])
    ap.add_argument("--ack-file")
    ap.add_argument("--tls-cert", help="serve MLLP over TLS with this certificate (PEM)")
    ap.add_argument("--tls-key", help="and this private key (PEM)")
    args = ap.parse_args()

    def ack_code():
        if args.ack_file and os.path.exists(args.ack_file):
            with open(args.ack_file) as fh:
                code = fh.read().strip()
            if code in ("AA", "AE", "AR"):
                return code
        return args.ack

    async def client(reader, writer):
        try:
            while not writer.is_closing():
                msg = await reader.readmessage()
                try:
                    d = describe(msg)
                except Exception as e:  # noqa: BLE001 - reported, not fatal
                    d = {"errors": ["cannot read the message: %r" % e], "raw": str(msg)}
                code = ack_code()
                d["ack"] = code
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(d) + "\n")
                writer.writemessage(msg.create_ack(code, application="test-receiver"))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    tls = {}
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        tls["ssl"] = ctx
    server = await hl7.mllp.start_hl7_server(client, host="127.0.0.1", port=args.port, **tls)
    print("listening on %d" % args.port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
