#!/usr/bin/env python3
"""The web page `tiledraw serve` serves at /, in headless Chromium: a link
that fills the form and generates on load must show the image the API gives
for the same request, with its parameters; a screenshot is kept; a server
with an API key refuses the page without the key and answers it with one.

    browser_test.py TILEDRAW_BINARY OUTPUT_DIR

Chromium's virtual time does not advance while a fetch is pending, so
--virtual-time-budget makes --dump-dom wait for the generation itself."""
import base64
import html.parser
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, failures, image_pixels  # noqa: E402

if len(sys.argv) != 3:
    sys.exit(__doc__)
TILEDRAW, OUT = sys.argv[1], sys.argv[2]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
DATA_PNG = "data:image/png;base64,"
def chromium(url, *flags):
    """Runs headless Chromium on `url` with a fresh profile (no localStorage
    left from an earlier run); its stdout."""
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
             "--virtual-time-budget=20000", *flags, url],
            capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        sys.exit(f"FAIL  chromium exited with {run.returncode} on {url}:\n{run.stderr[-3000:]}")
    return run.stdout


class Page(html.parser.HTMLParser):
    """What the tests read from a dumped DOM: body's data-state, the result
    images, the infotexts, the error text and the gallery's images."""

    def __init__(self, dom):
        super().__init__()
        self.state, self.results, self.infotexts, self.error, self.gallery = None, [], [], "", 0
        self._into, self._stack = None, []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "body":
            self.state = a.get("data-state")
        if tag == "img" and "result" in classes:
            self.results.append(a.get("src") or "")
        if tag == "img" and "gallery" in self._stack:
            self.gallery += 1
        if tag == "pre" and "infotext" in classes:
            self.infotexts.append("")
            self._into = "infotext"
        if a.get("id") == "error":
            self._into = "error"
        if a.get("id") == "gallery":
            self._stack.append("gallery")
        elif tag == "div" and self._stack:
            self._stack.append("div")

    def handle_endtag(self, tag):
        if tag in ("pre", "p"):
            self._into = None
        if tag == "div" and self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._into == "infotext":
            self.infotexts[-1] += data
        elif self._into == "error":
            self.error += data


def main():
    if not CHROMIUM:
        sys.exit("FAIL  no chromium found (install Debian's chromium, or set CHROMIUM)")
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    start = time.monotonic()

    with Server(TILEDRAW) as server:
        base = f"http://127.0.0.1:{server.port}/"
        link = base + "?prompt=a+white+sneaker&seed=7&steps=8&generate=1"
        page = Page(chromium(link, "--dump-dom"))
        print(f"page {link}: data-state={page.state}, {len(page.results)} result image(s)")
        check(page.state == "done", f"body data-state is 'done' (got {page.state!r}; error text {page.error!r})")
        check(len(page.results) >= 1 and all(src.startswith(DATA_PNG) for src in page.results),
              "at least one img.result whose src is a data:image/png;base64 URL")
        check(any("a white sneaker" in t and "Seed: 7" in t for t in page.infotexts),
              f"the infotext shown has 'a white sneaker' and 'Seed: 7' (got {page.infotexts!r})")
        check(page.gallery == len(page.results), f"the session gallery holds the result ({page.gallery} image(s))")

        # The same fields the page sends for that link, straight to the API.
        body = {"prompt": "a white sneaker", "negative_prompt": "", "steps": 8, "seed": 7, "batch_size": 1}
        status, _, answer = server.post("/sdapi/v1/txt2img", body)
        check(status == 200, f"POST /sdapi/v1/txt2img {body} answers 200 (got {status})")
        if page.results and status == 200:
            shown = image_pixels(page.results[0][len(DATA_PNG):])
            direct = image_pixels(answer["images"][0])
            check(shown == direct, f"the page's image is the API's, pixel for pixel ({shown[0]}x{shown[1]}, {shown[2]} channel(s))")

        # A value the server refuses: its one-line detail must reach the user.
        page = Page(chromium(base + "?prompt=a+white+sneaker&sampler=no-such-sampler&generate=1", "--dump-dom"))
        check(page.state == "error" and "sampler_name" in page.error and not page.results,
              f"a refused sampler shows the server's detail (data-state={page.state!r}, error {page.error!r})")

        shot = os.path.join(OUT, "web_page.png")
        chromium(link, f"--screenshot={shot}", "--window-size=1000,900")
        size = os.path.getsize(shot) if os.path.exists(shot) else 0
        check(size > 10000, f"screenshot {shot} written ({size} bytes)")

    with Server(TILEDRAW, "--api-key", "secret") as server:
        base = f"http://127.0.0.1:{server.port}/?prompt=a+dark+ankle+boot&seed=3&steps=8&generate=1"
        page = Page(chromium(base, "--dump-dom"))
        check(page.state == "error" and "Authorization" in page.error and not page.results,
              f"with --api-key and no key the page shows the refusal (data-state={page.state!r}, error {page.error!r})")
        page = Page(chromium(base + "&api_key=secret", "--dump-dom"))
        check(page.state == "done" and len(page.results) == 1 and not page.error,
              f"with &api_key=secret it generates (data-state={page.state!r}, error {page.error!r})")
        check(any("a dark ankle boot" in t and "Seed: 3" in t for t in page.infotexts),
              f"and shows the infotext (got {page.infotexts!r})")

    print(f"{time.monotonic() - start:.1f} s")
    if failures:
        sys.exit(f"FAIL  {len(failures)} check(s) of the web page failed:\n  " + "\n  ".join(failures))
    print("all web page checks passed")


main()
