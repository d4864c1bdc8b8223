"""The browser-test infrastructure (tests/browser.py) works end to end: Debian's headless Chromium opens a page from a
local HTTP server, a real wav file is uploaded through its file input, the page's JavaScript reads the file, and
the test reads the result off the page. The test of `paralign serve`'s own page builds on the same pieces."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf

from tests.browser import chromium, screenshot  # noqa: F401  (chromium: a fixture)

# A file input whose JavaScript reads the chosen file (its bytes, not only its name) and writes what it found.
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>upload probe</title></head>
<body>
<input type="file" id="file" accept="audio/*">
<div id="out"></div>
<script>
document.getElementById("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  const head = new Uint8Array(await file.arrayBuffer()).subarray(0, 4);
  document.getElementById("out").textContent =
    file.name + " " + file.size + " " + String.fromCharCode(...head);
});
</script>
</body></html>
"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):  # keep the test's output quiet
        pass


@pytest.fixture
def page_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)  # port 0: a free one
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_headless_chromium_uploads_a_wav_and_the_page_reads_it(chromium, page_url, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wav = tmp_path / "clip.wav"
    t = np.arange(4000) / 16000
    sf.write(wav, 0.3 * np.sin(2 * np.pi * 440 * t), 16000, subtype="PCM_16")
    size = wav.stat().st_size
    assert size == 44 + 2 * 4000  # a plain RIFF header and 16-bit samples

    chromium.get(page_url)
    chromium.find_element(By.ID, "file").send_keys(str(wav))
    out = chromium.find_element(By.ID, "out")
    WebDriverWait(chromium, 30).until(lambda _: out.text.strip())
    assert out.text.strip() == f"clip.wav {size} RIFF"

    png = screenshot(chromium, tmp_path / "shots" / "page.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
