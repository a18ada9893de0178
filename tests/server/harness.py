"""Runs `tiledraw serve` for a test and talks to it with the standard
library's HTTP client: start a server on a free loopback port, send JSON, read
the answer, stop it and check it exited cleanly."""
import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from png_pixels import decode_png  # noqa: E402


class Server:
    """`tiledraw serve --listen 127.0.0.1:0 ARGS`, stopped with SIGTERM on exit."""

    def __init__(self, tiledraw, *args, env=None):
        self.process = subprocess.Popen(
            [tiledraw, "serve", "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})})
        line = self.process.stdout.readline()
        if "http://" not in line:
            self.process.kill()
            raise RuntimeError(f"tiledraw serve did not start: {line}{self.process.stderr.read()}")
        self.port = int(line.split("http://127.0.0.1:")[1].split("/")[0])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        """SIGTERM, as a service manager stops it; the exit must be clean."""
        return stop_process(self.process, signal.SIGTERM, "tiledraw serve")

    def request(self, method, path, body=None, headers=None, raw=None, timeout=120):
        """(status, headers, parsed JSON or text). `body` is sent as JSON, `raw` as is."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        kind = response.getheader("Content-Type", "")
        parsed = json.loads(payload) if kind.startswith("application/json") else payload.decode("utf-8", "replace")
        return response.status, dict(response.getheaders()), parsed

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def rss_kib(self):
        """The server's resident memory, from /proc."""
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")


failures = []


def check(condition, what):
    """Prints the check as ok or FAIL; failures are kept in `failures`."""
    print(("ok    " if condition else "FAIL  ") + what)
    if not condition:
        failures.append(what)


def stop_process(process, sig, name, timeout=30):
    """Sends `sig` unless the process has ended, waits, and insists on exit 0;
    returns its stderr."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"{name} did not stop within {timeout} s of {signal.Signals(sig).name}")
    stderr = process.stderr.read()
    if process.returncode != 0:
        raise AssertionError(f"{name} exited with {process.returncode}: {stderr}")
    return stderr


def image_pixels(b64):
    """(width, height, channels, pixels) of a base64 PNG from a response."""
    return decode_png(base64.b64decode(b64))


def png_text(b64):
    """The tEXt/iTXt chunks of a base64 PNG, as a dict."""
    data, pos, texts = base64.b64decode(b64), 8, {}
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, chunk = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            key, value = chunk.split(b"\0", 1)
            texts[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt":
            key, rest = chunk.split(b"\0", 1)
            texts[key.decode("latin-1")] = rest[2:].split(b"\0", 2)[2].decode("utf-8")
        pos += 12 + length
    return texts


def wait_until(predicate, timeout=10.0, interval=0.05):
    """Polls `predicate` until it is true; False after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return False
