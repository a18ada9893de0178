#!/usr/bin/env python3
"""examples/nginx.conf as shipped, in front of two `tiledraw serve` instances:
generations through nginx come back whole and equal to what an instance
draws directly, least_conn uses both instances, a body over nginx's default
limit gets through, a full queue's 503 and its Retry-After reach the client
(and both instances stay in use), a stopped instance is passed over, a client
that hangs up has its job cancelled, and GET /health answers through nginx.

The test's nginx.conf is the example with its two upstream `server` lines and
its `listen` line pointed at free ports, and the paths nginx writes (pid, logs,
temporary files) moved into WORK_DIR; an access log of $upstream_addr tells
which instance served each request.

    nginx_test.py TILEDRAW_BINARY WORK_DIR      (nginx: $NGINX or /usr/sbin/nginx)

Exits 77 (skipped) when there is no nginx."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, image_pixels, stop_process, wait_until  # noqa: E402

TILEDRAW, WORK = sys.argv[1], os.path.abspath(sys.argv[2])
EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "nginx.conf")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
T2I = "/sdapi/v1/txt2img"
PROMPTS = ["a white sneaker", "a dark ankle boot", "light grey trousers"]
failures = []


def check(condition, what):
    print(("ok    " if condition else "FAIL  ") + what)
    if not condition:
        failures.append(what)
    return condition


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def derived_config(example, port_a, port_b, listen_port):
    """The example with test ports and every path nginx writes inside WORK."""
    text = example
    for old, new in [("127.0.0.1:7861", f"127.0.0.1:{port_a}"), ("127.0.0.1:7862", f"127.0.0.1:{port_b}"),
                     ("listen 127.0.0.1:7860;", f"listen 127.0.0.1:{listen_port};")]:
        if old not in text:
            raise AssertionError(f"{EXAMPLE}: no '{old}' to point at the test's port (the example changed?)")
        text = text.replace(old, new)
    if text.count("http {") != 1:
        raise AssertionError(f"{EXAMPLE}: expected one 'http {{' block")
    # As root, nginx's workers would run as nobody, who may not reach WORK.
    main = ("user root;\n" if os.geteuid() == 0 else "") + (
        f"daemon off;\nworker_processes 1;\npid {WORK}/nginx.pid;\nerror_log {WORK}/error.log info;\n")
    http = (f"http {{\n"
            f"    log_format upstreams '$request_method $request_uri $status \"$upstream_addr\"';\n"
            f"    access_log {WORK}/access.log upstreams;\n"
            + "".join(f"    {kind}_temp_path {WORK}/{kind}_temp;\n"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")))
    return main + text.replace("http {", http, 1)


class Nginx:
    def __init__(self, config_text):
        self.conf = os.path.join(WORK, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(config_text)
        command = [NGINX, "-p", WORK + "/", "-c", self.conf, "-e", os.path.join(WORK, "error.log")]
        test = subprocess.run(command + ["-t"], capture_output=True, text=True)
        if test.returncode != 0:
            raise AssertionError(f"nginx -t refuses the derived config {self.conf}:\n{test.stderr}")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self):
        """SIGQUIT: nginx's graceful shutdown; it must exit 0."""
        stop_process(self.process, signal.SIGQUIT, "nginx", timeout=20)


class Front:
    """A Server-like client of nginx, for the harness's request()."""

    def __init__(self, port):
        self.port = port

    request, get, post = Server.request, Server.get, Server.post


def access_log():
    """[(method, uri, status, [upstream addresses])] from the test's access log."""
    entries = []
    with open(os.path.join(WORK, "access.log")) as f:
        for line in f:
            method, uri, status, upstreams = line.rstrip("\n").split(" ", 3)
            entries.append((method, uri, int(status), [u.strip() for u in upstreams.strip('"').split(",") if u.strip()]))
    return entries


def generations(count):
    """The access log's txt2img entries, once there are `count`: nginx writes
    an entry just after sending the answer, so it may come a moment late."""
    entries = lambda: [e for e in access_log() if e[1] == T2I]  # noqa: E731
    wait_until(lambda: len(entries()) >= count, timeout=5)
    return entries()


def body(i):
    return {"prompt": PROMPTS[i % len(PROMPTS)], "seed": 1000 + i, "steps": 6, "batch_size": 1 + i // 3 % 2,
            "sampler_name": ["Euler", "DPM++ 2M", "Euler a"][i // 2 % 3]}


def main():
    if not os.path.exists(NGINX):
        print(f"SKIP  no nginx at {NGINX} (set $NGINX)")
        return 77
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    with open(EXAMPLE) as f:
        example = f.read()

    # Two instances on two cores: one thread each, as one would deploy them.
    a = Server(TILEDRAW, "--workers", "1", "--queue", "2", env={"OMP_NUM_THREADS": "1"})
    b = Server(TILEDRAW, "--workers", "1", "--queue", "2", env={"OMP_NUM_THREADS": "1"})
    addr = {f"127.0.0.1:{a.port}": "A", f"127.0.0.1:{b.port}": "B"}
    nginx = None
    try:
        for attempt in range(3):  # the free port may be taken between looking and listening
            listen_port = free_port()
            nginx = Nginx(derived_config(example, a.port, b.port, listen_port))
            front = Front(listen_port)

            def answering():
                try:
                    return front.get("/health", timeout=2)[0] == 200
                except OSError:
                    return False
            if wait_until(lambda: answering() or nginx.process.poll() is not None, timeout=10) and nginx.process.poll() is None:
                break
            nginx.stop() if nginx.process.poll() is None else None
            if attempt == 2:
                raise AssertionError(f"nginx did not start: {nginx.process.stderr.read()}\n"
                                     + open(os.path.join(WORK, "error.log")).read())
        print(f"nginx on 127.0.0.1:{listen_port} in front of A (:{a.port}) and B (:{b.port}), config {nginx.conf}")

        status, _, health = front.get("/health")
        check(status == 200 and health.get("status") == "ok" and health.get("queue_capacity") == 2,
              f"GET /health through nginx: ok ({health})")

        # 24 generations, four at a time, through nginx.
        def through_nginx(i):
            return i, front.post(T2I, body(i))
        with ThreadPoolExecutor(4) as pool:
            answers = dict(pool.map(through_nginx, range(24)))
        good = [i for i, (status, _, answer) in answers.items()
                if status == 200 and isinstance(answer, dict) and len(answer.get("images", [])) == body(i)["batch_size"]]
        check(len(good) == 24, f"24 txt2img requests through nginx, 4 concurrent: all 200 with their images "
              f"({len(good)}; others: {[(i, answers[i][0], str(answers[i][2])[:100]) for i in answers if i not in good]})")
        for i in good:
            info = json.loads(answers[i][2]["info"])
            if info["all_seeds"] != [body(i)["seed"] + k for k in range(body(i)["batch_size"])]:
                check(False, f"request {i}: seeds {info['all_seeds']} in its info")
        # The same body straight to instance A draws the same pixels.
        compared = [i for i in good if i % 3 == i // 3 % 3]  # 8 of them, every prompt, sampler and batch size
        same = 0
        for i in compared:
            status, _, direct = a.post(T2I, body(i))
            if status == 200 and [image_pixels(x) for x in direct["images"]] == [image_pixels(x) for x in answers[i][2]["images"]]:
                same += 1
            else:
                print(f"      request {i} {body(i)}: the image through nginx differs from instance A's")
        check(same == len(compared) > 0, f"{same} of {len(compared)} responses through nginx have the pixels of the same request to A directly")

        served = [addr.get(up[-1], up[-1]) for _, _, _, up in generations(24) if up]
        check(served.count("A") >= 6 and served.count("B") >= 6,
              f"least_conn used both instances for the 24 ({served.count('A')} on A, {served.count('B')} on B)")

        # img2img sends its image in the body: more than nginx's default limit of 1m must get through.
        status, _, answer = front.post(T2I, {"prompt": "a white sneaker", "steps": 2, "padding": "x" * (2 << 20)})
        check(status == 200 and "padding" in json.loads(answer["info"])["ignored_fields"],
              f"a 2 MiB body (over nginx's default client_max_body_size) reaches an instance: {status}")

        # Overload: 16 at once on two instances of one worker and two places each.
        # The 503s and their Retry-After reach the client, and do not count as failures.
        barrier = threading.Barrier(16)

        def at_once(i):
            barrier.wait()
            return front.post(T2I, {"prompt": "a dark ankle boot", "seed": i, "steps": 40})
        with ThreadPoolExecutor(16) as pool:
            burst = list(pool.map(at_once, range(16)))
        ok = sum(1 for s, _, _ in burst if s == 200)
        busy = [(h, answer) for s, h, answer in burst if s == 503]
        check(ok + len(busy) == 16 and ok >= 2 and len(busy) >= 4
              and all(h.get("Retry-After") == "5" and "queue is full" in answer.get("detail", "") for h, answer in busy),
              f"16 at once through nginx: {ok} served, {len(busy)} 503 with Retry-After: 5 and the server's JSON "
              f"(others: {[(s, str(x)[:80]) for s, _, x in burst if s not in (200, 503)]})")
        for i in range(4):
            front.post(T2I, {"prompt": "a white sneaker", "seed": i, "steps": 2})
        after = [addr.get(up[-1], up[-1]) for _, _, _, up in generations(24 + 1 + 16 + 4)[-4:] if up]
        check(sorted(after) == ["A", "A", "B", "B"], f"after the 503s both instances are still in use ({after})")

        # An instance goes away: nginx passes its requests to the other one.
        b.stop()
        statuses = [front.post(T2I, body(i))[0] for i in range(6)]
        after = [up for _, _, _, up in generations(24 + 1 + 16 + 4 + 6)[-6:]]
        check(statuses == [200] * 6 and all(up and addr.get(up[-1]) == "A" for up in after),
              f"with B stopped, 6 requests all served by A ({statuses}, upstreams {after})")
        status, _, health = front.get("/health")
        check(status == 200 and health.get("status") == "ok", "GET /health through nginx with one instance left")
        # A client that hangs up: nginx closes its connection to the instance, which cancels the job.
        hanging = http.client.HTTPConnection("127.0.0.1", listen_port, timeout=30)
        hanging.request("POST", T2I, body=json.dumps({"prompt": "a white sneaker", "steps": 150, "batch_size": 16}),
                        headers={"Content-Type": "application/json"})
        running = wait_until(lambda: a.get("/health")[2]["running"] == 1, timeout=5)
        hanging.sock.shutdown(socket.SHUT_RDWR)
        hanging.close()
        hung_up = time.monotonic()
        cancelled = wait_until(lambda: a.get("/health")[2]["running"] == 0, timeout=2.5)
        check(running and cancelled, f"a client that hangs up through nginx: the instance's job ends "
              f"{time.monotonic() - hung_up:.2f} s later (want < 2.5 s, room for a step on a busy machine; all 16 x 150 steps take 4.3 s alone)")

        with open(os.path.join(WORK, "error.log")) as f:
            errors = [line.rstrip() for line in f if any(f"[{level}]" in line for level in ("error", "crit", "alert", "emerg"))
                      and "(111: Connection refused) while connecting to upstream" not in line]
        check(not errors, "nginx's error log: nothing but the refused connections to the stopped B" + "".join("\n      " + e for e in errors))
    finally:
        stopped = True
        for step in (lambda: nginx and nginx.stop(), a.stop, b.stop):
            try:
                step()
            except AssertionError as e:
                stopped = check(False, str(e))
    if stopped:
        check(True, "nginx and both instances stopped cleanly")

    if failures:
        print(f"\n{len(failures)} failed:\n  " + "\n  ".join(failures))
        return 1
    print("\nall passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
