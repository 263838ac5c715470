#!/usr/bin/env python3
"""The Spaces API end to end, from a client that shares nothing with the server: Python's standard
library only (HTTP, a minimal RFC 6455 WebSocket client, and an SSE reader).

    python3 examples/demo_room.py http://127.0.0.1:8080 dev-key

Creates the example `demo-room` space, opens a writer session, joins over WebSocket (JSON frames), reads
telemetry, proposes a `shift_phase` delta and waits for it to come back, then reads the same space's
telemetry over SSE. Prints one JSON line per step and exits non-zero on any deviation from the contract.
"""
import base64
import http.client
import json
import os
import socket
import struct
import sys
import time
import urllib.parse
import urllib.request

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
KEY = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("RESONANCE_API_KEY", "dev-key")


def say(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def fail(message):
    print(json.dumps({"error": message}), flush=True)
    sys.exit(1)


def rest(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("X-Api-Key", KEY)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


class WebSocket:
    """Just enough of RFC 6455 for text frames: client masking, ping/close handling, no extensions."""

    def __init__(self, url, protocol):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + ("?" + u.query if u.query else "")
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                fail("connection closed during the handshake")
            head += chunk
        status = head.split(b"\r\n", 1)[0].decode()
        if " 101 " not in status:
            fail(f"upgrade refused: {status}")
        self.buffer = b""

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                fail("connection closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def send(self, obj):
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv(self):
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                fail(f"closed by the server: {struct.unpack('>H', payload[:2])[0] if len(payload) >= 2 else ''}")
            # pings are answered by nobody here; the server does not require it

    def close(self):
        self.sock.sendall(bytes([0x88, 0x82]) + b"\0\0\0\0" + struct.pack(">H", 1000))
        self.sock.close()


def main():
    status, space = rest("POST", "/v1/spaces", {
        "name": "demo-room",
        "basis": {"primes": [2, 3, 5, 7, 11, 13], "cutoff": 1024},
        "phases": {"golden": True, "silver": True},
        "operators": {"resonanceTarget": 0.85},
        "entropy": {"lambda": 0.03, "collapseThreshold": 0.96},
    })
    if status != 201:
        fail(f"create: {status} {space}")
    say("created", id=space["id"], epoch=space["epoch"], version=space["version"], status=space["status"])

    status, session = rest("POST", f"/v1/spaces/{space['id']}/sessions", {"role": "writer", "displayName": "py"})
    if status != 201:
        fail(f"session: {status} {session}")
    say("session", sessionId=session["sessionId"], expiresIn=session["expiresIn"])

    ws = WebSocket(session["websocketUrl"] + "?token=" + urllib.parse.quote(session["token"]), "resonance.v1.json")
    ws.send({"type": "hello", "version": 1, "sessionId": session["sessionId"]})
    welcome = ws.recv()
    if welcome.get("type") != "welcome" or welcome.get("spaceId") != space["id"]:
        fail(f"expected welcome, got {welcome}")
    say("welcome", epoch=welcome["epoch"], version=welcome["version"])

    telemetry, snapshot = [], None
    while len(telemetry) < 5:
        frame = ws.recv()
        if frame["type"] == "snapshot":
            snapshot = frame["snapshot"]
        elif frame["type"] == "telemetry":
            telemetry.append(frame)
    if snapshot is None or len(snapshot["state"]["phases"]) != 6:
        fail("expected a snapshot with 6 phases")
    ts = [f["t"] for f in telemetry]
    if ts != list(range(ts[0], ts[0] + 5)):
        fail(f"telemetry t not consecutive: {ts}")
    say("telemetry", t=ts, resonanceStrength=telemetry[-1]["resonanceStrength"])

    version = welcome["version"]
    ws.send({"type": "propose_delta", "requestId": "py-1", "delta": {
        "fromVersion": version, "toVersion": version + 1, "cv": [version],
        "ops": [{"op": "shift_phase", "path": "/state/phases/3", "value": 0.0123}],
    }})
    while True:
        frame = ws.recv()
        if frame["type"] == "delta":
            break
        if frame["type"] in ("conflict", "error"):
            fail(f"delta refused: {frame}")
    if frame["toVersion"] != version + 1 or frame["fromVersion"] != version or frame.get("requestId") != "py-1":
        fail(f"unexpected delta frame {frame}")
    say("delta", fromVersion=frame["fromVersion"], toVersion=frame["toVersion"])
    ws.close()

    u = urllib.parse.urlsplit(session["sseUrl"])
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    conn.request("GET", u.path + "?token=" + urllib.parse.quote(session["token"]), headers={"Accept": "text/event-stream"})
    res = conn.getresponse()
    if res.status != 200 or not res.getheader("Content-Type", "").startswith("text/event-stream"):
        fail(f"sse: {res.status}")
    events, event = [], {}
    deadline = time.time() + 10
    while len([e for e in events if e.get("event") == "telemetry"]) < 3 and time.time() < deadline:
        line = res.fp.readline().decode().rstrip("\n")
        if line == "":
            if "data" in event:
                events.append(event)
            event = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            event[field] = value.lstrip(" ")
    kinds = [e.get("event") for e in events]
    tele = [json.loads(e["data"]) for e in events if e.get("event") == "telemetry"]
    if len(tele) < 3 or any(t["version"] < version + 1 for t in tele):
        fail(f"sse telemetry missing or stale: {kinds}")
    say("sse", events=kinds, version=tele[-1]["version"])
    conn.close()

    status, snap = rest("GET", f"/v1/spaces/{space['id']}/snapshot")
    if status != 200 or snap["version"] != version + 1:
        fail(f"snapshot: {status} {snap}")
    say("snapshot", version=snap["version"], epoch=snap["epoch"], t=snap["t"])


if __name__ == "__main__":
    main()
