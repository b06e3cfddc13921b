"""A QMP client (QEMU's JSON control protocol) on a unix socket, and the time of an event."""

import json
import select
import socket
import time

from diagnostics import BenchError, tail


class QMP:
    """A QMP client on a unix socket. Events are kept in self.events, in order."""

    def __init__(self, path, proc, name, stderr_path, timeout=30.0):
        self.name, self.proc, self.stderr_path = name, proc, stderr_path
        self.events = []
        self.buf = b""
        self.next_id = 1
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise BenchError("%s QEMU exited (status %s) before its QMP socket was up; "
                                 "its log:\n%s" % (name, proc.returncode, tail(stderr_path)))
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise BenchError("%s QEMU: no QMP socket at %s after %.0f s; its log:\n%s"
                                     % (name, path, timeout, tail(stderr_path)))
                time.sleep(0.05)
        greeting = self._read_msg(deadline)
        if "QMP" not in greeting:
            raise BenchError("%s QEMU: unexpected QMP greeting %r" % (name, greeting))
        self.cmd("qmp_capabilities")

    def _read_msg(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("%s QEMU: QMP timed out; its log:\n%s"
                                 % (self.name, tail(self.stderr_path)))
            r, _, _ = select.select([self.sock], [], [], min(left, 0.5))
            if not r:
                if self.proc.poll() is not None:
                    raise BenchError("%s QEMU exited (status %s); its log:\n%s"
                                     % (self.name, self.proc.returncode, tail(self.stderr_path)))
                continue
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                raise BenchError("%s QEMU closed its QMP socket (exit status %s); its log:\n%s"
                                 % (self.name, self.proc.poll(), tail(self.stderr_path)))
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.strip()
        if not line:
            return self._read_msg(deadline)
        return json.loads(line)

    def cmd(self, name, args=None, timeout=30.0, check=True):
        cid = self.next_id
        self.next_id += 1
        msg = {"execute": name, "id": cid}
        if args is not None:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_msg(deadline)
            if "event" in m:
                m["_recv"] = time.time()
                self.events.append(m)
                continue
            if m.get("id") != cid:
                continue
            if "error" in m:
                if check:
                    raise BenchError("%s QEMU: %s %s failed: %s" % (
                        self.name, name, json.dumps(args) if args else "", m["error"].get("desc")))
                return m
            return m.get("return")

    def first_event(self, name):
        for e in self.events:
            if e.get("event") == name:
                return e
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def event_time(e):
    ts = e.get("timestamp") or {}
    if "seconds" in ts:
        return ts["seconds"] + ts.get("microseconds", 0) / 1e6
    return e.get("_recv")
