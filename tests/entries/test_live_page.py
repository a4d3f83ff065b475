"""examples/live.html in a real headless Chromium (Debian's `chromium` package), driven over the
DevTools protocol with the `websockets` client: Chromium's fake microphone plays real speech
(tests/data/jfk.flac) into the page, the page streams it to the worker's /v1/realtime endpoint
(tiny.en on CPU, loopback), and the spoken words must appear on the page. Skipped where there
is no Chromium."""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import itertools
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import requests

from helpers import DATA, ROOT, loopback_server, pcm_wav, references, wait_until, wer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (Debian: apt-get install chromium)")
client = pytest.importorskip("websockets.sync.client")

EXAMPLES = ROOT / "examples"
RATE = 48000  # the fake microphone's file; the page's AudioContext runs at 24 kHz


def speech_wav(path: Path) -> Path:
    """jfk.flac as the fake microphone plays it: 1 s of silence while the page wires up its
    audio graph, the speech, then 2.5 s of silence so that server VAD ends the turn."""
    from faster_whisper import decode_audio

    speech = decode_audio(str(DATA / "jfk.flac"), sampling_rate=RATE)
    samples = np.concatenate([np.zeros(RATE), speech, np.zeros(int(2.5 * RATE))]).astype(np.float32)
    path.write_bytes(pcm_wav(samples, RATE, channels=1))
    return path


class Tab:
    """One Chromium tab over the DevTools protocol: just enough to run JavaScript in it."""

    def __init__(self, url: str):
        self.socket = client.connect(url, max_size=None, open_timeout=10)
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:  # protocol events in between are not ours
            reply = json.loads(self.socket.recv(timeout=30))
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def js(self, expression: str, gesture: bool = False):
        """The value of a JavaScript expression (promises awaited); `gesture`: as if a person
        clicked, which the page's AudioContext needs to start."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True, userGesture=gesture)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


def quietly(function, *args):
    """function(*args), or None where it fails (a page still navigating has no context to run in)."""
    try:
        return function(*args)
    except (RuntimeError, AssertionError):
        return None


@contextlib.contextmanager
def chromium(url: str, wav: Path, profile: Path):
    """Headless Chromium showing `url`, its microphone the WAV file (played once), permission
    prompts answered yes; yields the tab."""
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--remote-debugging-port=0", url]
    log = open(profile.parent / "chromium.log", "wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    tab = None
    try:
        active = profile / "DevToolsActivePort"  # Chromium writes the port it picked here
        assert wait_until(lambda: active.is_file() and active.read_text().count("\n") >= 1 or process.poll() is not None, 30), "chromium did not start"
        assert process.poll() is None, (profile.parent / "chromium.log").read_text(errors="replace")[-3000:]
        port = int(active.read_text().split()[0])
        pages = []
        assert wait_until(lambda: pages.extend(t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                                                if t["type"] == "page") or pages, 10)
        tab = Tab(pages[0]["webSocketDebuggerUrl"])
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"  # not the about:blank before it
        assert wait_until(lambda: quietly(tab.js, loaded), 20, 0.1), "the page did not load"
        yield tab
    finally:
        if tab is not None:
            tab.socket.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def serve(folder: Path):
    """A folder over HTTP on loopback (a secure context: the page may ask for the microphone)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def worker_server(service):
    """The server mode's app (create_app) on a free loopback port, as `python -m worker` runs it;
    yields host:port and the app's live sessions (worker/entries/realtime.py's RealtimeState)."""
    from worker.entries.http import Readiness, create_app

    app = create_app(Readiness(service))
    with loopback_server(app) as port:
        yield f"127.0.0.1:{port}", app.state.realtime


# What the page shows: one entry per turn, and the connection's state.
PAGE_STATE = """({
  items: [...document.querySelectorAll("#transcript p")].map((p) => ({
    id: p.dataset.itemId, state: p.dataset.state, deltas: Number(p.dataset.deltas), partial: p.dataset.partial, text: p.textContent })),
  status: document.getElementById("status").textContent,
  error: document.getElementById("error").textContent,
  socket: document.body.dataset.socket, closeCode: document.body.dataset.closeCode, closeClean: document.body.dataset.closeClean,
  log: [...document.querySelectorAll("#log li")].map((li) => li.textContent),
})"""


@pytest.fixture(scope="module")
def page(tiny_service, tmp_path_factory):
    """The live page in Chromium, pointed at a running worker; the fake microphone plays jfk."""
    folder = tmp_path_factory.mktemp("chromium")
    wav = speech_wav(folder / "jfk.wav")
    with worker_server(tiny_service.service) as (host, live), serve(EXAMPLES) as site:
        endpoint = f"ws://{host}/v1/realtime?intent=transcription"
        with chromium(f"{site}/live.html?endpoint={urllib.parse.quote(endpoint, safe='')}", wav, folder / "profile") as tab:
            yield tab, endpoint, live


def test_the_page_reads_its_endpoint_from_the_query(page):
    tab, endpoint, _ = page
    assert tab.js('document.getElementById("endpoint").value') == endpoint
    assert tab.js('document.getElementById("language").value') == "en"


def test_the_page_resamples_and_encodes_pcm16_as_the_session_expects(page):
    """The in-page resampler (used where the browser will not run the AudioContext at 24 kHz)
    and the PCM16 encoding, run in Chromium's JavaScript: a 440 Hz tone fed in 128-sample
    blocks, as the audio thread delivers them, comes out at 24 kHz without seams."""
    tab, _, _ = page
    for rate in (48000, 44100, 16000):
        worst, count = tab.js(f"""(() => {{
          const resample = resampler({rate}, 24000), out = [];
          const tone = (t) => Math.sin(2 * Math.PI * 440 * t);
          for (let start = 0; start < {rate}; start += 128) {{
            const block = Float32Array.from({{ length: 128 }}, (_, i) => tone((start + i) / {rate}));
            out.push(...resample(block));
          }}
          return [Math.max(...out.map((v, n) => Math.abs(v - tone(n / 24000)))), out.length];
        }})()""")
        fed = -(-rate // 128) * 128  # whole blocks: a second and a bit
        assert abs(count - fed * 24000 / rate) <= 1, (rate, count)
        assert worst < 0.02, (rate, worst)
    sent = tab.js("""(() => {
      const sent = [], batches = batcher((bytes) => sent.push(base64(bytes)));
      batches.push([0, 1, -1, 0.5, 2, -2]);
      batches.push(new Float32Array(BATCH));
      batches.flush();
      return sent;
    })()""")
    first = np.frombuffer(base64.b64decode(sent[0]), dtype="<i2")
    assert len(first) == 2400 and list(first[:6]) == [0, 32767, -32768, 16383, 32767, -32768]  # 100 ms at 24 kHz, clipped
    assert len(np.frombuffer(base64.b64decode(sent[1]), dtype="<i2")) == 6  # the rest, on flush


def test_spoken_words_appear_on_the_page_partial_first_then_final(page):
    """Start streams the fake microphone (real speech at real-time pace); the page shows deltas
    in grey while a turn is spoken, then the completed text, which only the server's
    transcription can put there; Stop closes the WebSocket with 1000."""
    tab, _, live = page
    reference = references(DATA)["jfk.flac"]
    began = time.monotonic()
    tab.js('document.getElementById("start").click()', gesture=True)
    state = {}

    def finished() -> bool:  # the speech is over (it ends 12 s after Start) and every turn has its text
        state.update(tab.js(PAGE_STATE))
        over = time.monotonic() - began > 12.5 and state["items"] and all(item["state"] != "partial" for item in state["items"])
        return bool(over or state["error"] or state["socket"] == "closed")

    wait_until(finished, 60, 0.25)
    took = time.monotonic() - began
    finals = [item for item in state["items"] if item["state"] == "final"]
    text = " ".join(item["text"] for item in finals)
    assert not state["error"] and state["socket"] == "open", state
    assert finals and all(item["state"] == "final" for item in state["items"]), state
    assert wer(reference, text) <= 0.2, state  # words only the server's transcription puts on the page
    assert any(item["deltas"] > 0 and item["partial"].strip() for item in finals), f"no partial text shown before a final one: {state}"
    assert "session.updated" in " ".join(state["log"]) and "input_audio_buffer.speech_stopped" in " ".join(state["log"]), state["log"]

    tab.js('document.getElementById("stop").click()', gesture=True)
    assert wait_until(lambda: tab.js("document.body.dataset.socket") == "closed", 10, 0.1), tab.js(PAGE_STATE)
    closed = tab.js(PAGE_STATE)
    assert (closed["closeCode"], closed["closeClean"]) == ("1000", "true"), closed
    assert not closed["error"], closed
    assert tab.js('document.getElementById("start").disabled') is False
    assert wait_until(lambda: not live.sessions and live.decodes == 0, 10), "the server still holds the session"
    print(f"jfk (11 s of speech, from 1 s after Start) on the page {took:.1f} s after Start:",
          *(f"{item['state']} after {item['deltas']} deltas ({item['partial']!r}): {item['text']!r}" for item in state["items"]), sep="\n  ")


def test_stop_while_speaking_commits_the_turn_and_shows_its_text(page):
    """Stop in the middle of a turn: the page commits it, shows its completed text, then closes
    with 1000. (Chromium's fake microphone plays the file from its start again for this session.)"""
    tab, _, live = page
    tab.js('document.getElementById("transcript").replaceChildren()')
    tab.js('document.getElementById("start").click()', gesture=True)
    # the last turn ("ask what you can do for your country", 3 s) has started: Stop a second into it
    speaking = '[...document.querySelectorAll("#transcript p")].length >= 4 && document.querySelector("#transcript p:last-child").dataset.state === "partial"'
    assert wait_until(lambda: tab.js(speaking), 20, 0.05), tab.js(PAGE_STATE)
    time.sleep(1)
    tab.js('document.getElementById("stop").click()', gesture=True)
    assert wait_until(lambda: tab.js("document.body.dataset.socket") == "closed", 10, 0.05), tab.js(PAGE_STATE)
    state = tab.js(PAGE_STATE)
    assert (state["closeCode"], state["closeClean"], state["error"]) == ("1000", "true", ""), state
    last = state["items"][-1]
    assert last["state"] == "final" and last["text"].strip(), state
    events = [entry.split()[-1] for entry in state["log"]]  # "<time>  <event type>"
    after = events[len(events) - 1 - events[::-1].index("input_audio_buffer.speech_started"):]
    assert "input_audio_buffer.committed" in after and "input_audio_buffer.speech_stopped" not in after, events  # the page's commit
    assert wait_until(lambda: not live.sessions and live.decodes == 0, 10), "the server still holds the session"
