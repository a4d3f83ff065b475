"""Live transcription in the OpenAI server mode: `GET /v1/realtime?intent=transcription` (the
intent may be left out; `model=` is ignored) upgrades to a WebSocket on the API's port that speaks
OpenAI's Realtime transcription-session events (worker/live/session.py holds the protocol; this
module carries it and wires it to the Service).

- Decoding: each turn, and each partial decode, runs on one of the Service's job threads through
  the same engine and cross-job scheduler as file jobs, as urgent work (its windows go to the
  front of the queue), so live sessions and file jobs share batches. A turn is decoded with the
  worker's defaults (the file endpoint's request with no options), a partial as a glimpse
  (Engine.glimpse). A turn's audio after its sealed pieces is decoded with their text's end as
  prompt (after the session's prompt, as much as the decoder's prompt room takes).
- Refusals come after the upgrade, as an `error` event and a close code, so that every client (a
  browser's WebSocket cannot read an HTTP error) can tell why: 1013 (try again later) while the
  model loads (`loading`) and when WHISPER_REALTIME_SESSIONS sessions are open (`session_limit`),
  1008 for an intent other than transcription. Later closes: 1000 after
  WHISPER_REALTIME_IDLE_TIMEOUT seconds without a client message (an `error` event `idle_timeout`
  first); 1009 for a message over MAX_MESSAGE_BYTES (uvicorn's `ws_max_size`, which `serve()`
  sets to it, and checked here too); 1008 for a client that does not read its events
  (OUTGOING_EVENTS waiting, or one send blocked SEND_STALL_S: the session ends at once, its socket
  once the peer goes); 1011 for a bug; 1012 when the server stops (uvicorn's).
- A client's mistakes are `error` events, and the session goes on.
- Nothing is left behind: when a session ends, however it ends, its decodes are cancelled (queued
  windows dropped, a running batch finished) and waited for, and its buffers dropped; the
  session count and the decodes in flight (`app.state.realtime`) go back to zero.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from typing import Optional, Tuple

import numpy as np
from fastapi import FastAPI, WebSocket

from worker.errors import WorkerError
from worker.live.partials import join_text
from worker.live.protocol import MODEL_ALIASES, ProtocolError, error_event
from worker.live.session import LiveSession

log = logging.getLogger("worker.realtime")

MAX_MESSAGE_BYTES = 16 * 2**20  # one client message (an append of about 5.8 minutes of 24 kHz PCM16 in base64)
OUTGOING_EVENTS = 256  # server events waiting for a client that does not read: more closes it (1008)
SEND_STALL_S = 10.0  # one event that cannot be sent for this long closes the session (1008)
CONTEXT_CHARS = 600  # the most of a turn's earlier text a decode of its later audio is conditioned on (about 150 English tokens)
DRAIN_S = 5.0  # at a close by the server, how long the events already queued may take to go out


class RealtimeState:
    """Across sessions: those open, and decodes submitted and not finished (tests read both)."""

    def __init__(self):
        self.sessions: set = set()
        self.decodes = 0
        self.numbers = itertools.count(1)


class ServiceTranscriber:
    """A session's decodes on the Service: the request built as the file endpoint builds it (its
    `language` and `initial_prompt` from the session), each decode on a job thread, urgent."""

    def __init__(self, service, state: RealtimeState, name: str):
        self.service = service
        self.state = state
        self.name = name
        self.turns = itertools.count(1)

    def _request(self, language: Optional[str], prompt: str, partial: bool):
        fields = {"language": language} if language else {}
        if prompt:
            fields["initial_prompt"] = prompt
        if partial:
            fields["temperature"] = 0.0  # a partial is a glimpse: one greedy pass, never sampled
        return self.service.parse(fields, self.name, uploaded=True)

    def check(self, language: Optional[str], prompt: str) -> None:
        self.service.engine.check(self._request(language, prompt, False))

    def _conditioned(self, language: Optional[str], prompt: str, context: str, partial: bool):
        """The request for audio that follows `context` in its turn: the session's prompt, then as
        much of the context's end as the decoder's prompt room takes (Whisper reads the text before
        a window as its prompt; the session's prompt was checked to fit on its own)."""
        for keep in (CONTEXT_CHARS, CONTEXT_CHARS // 4):
            tail = context[-keep:]
            if len(context) > keep and " " in tail:
                tail = tail[tail.index(" ") + 1:]  # from a word's start
            request = self._request(language, join_text(prompt, tail), partial)
            try:
                self.service.engine.check(request)
                return request
            except WorkerError:
                continue  # too many tokens for the prompt room: less of the context
        return self._request(language, prompt, partial)

    async def transcribe(self, samples: np.ndarray, language: Optional[str], prompt: str, cancelled: threading.Event, partial: bool,
                         context: str = "") -> str:
        request = self._conditioned(language, prompt, context, partial) if context else self._request(language, prompt, partial)
        job_id = f"{self.name}/partial" if partial else f"{self.name}/{next(self.turns)}"
        service = self.service
        if partial:  # a glimpse: quick, rough, never the turn's text
            future = service.submit(lambda: service.engine.glimpse(samples, request, job_id, cancelled))
        else:
            future = service.submit(lambda: service.transcribe_samples(samples, request, job_id, cancelled, urgent=True).text)
        self.state.decodes += 1

        def finished(done: asyncio.Future) -> None:
            self.state.decodes -= 1
            if not done.cancelled():
                done.exception()  # retrieved: a cancelled session's Cancelled is expected

        future.add_done_callback(finished)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()  # the thread stops at its next check; wait for it, so nothing runs on
            await asyncio.wait({future})
            raise


class Outgoing:
    """A session's events to its client, through a bounded queue and one sender task, so that a
    client that does not read blocks nobody: it is closed instead."""

    def __init__(self, websocket: WebSocket):
        self.websocket = websocket
        self.queue: asyncio.Queue = asyncio.Queue(OUTGOING_EVENTS)
        self.stalled = asyncio.Event()
        self.gone = False
        self.task = asyncio.ensure_future(self._run())

    async def put(self, event: dict) -> None:
        if self.stalled.is_set() or self.gone:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.stalled.set()

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            if event is None:
                return
            try:
                await asyncio.wait_for(self.websocket.send_text(json.dumps(event)), SEND_STALL_S)
            except asyncio.TimeoutError:
                self.stalled.set()
                return
            except Exception:  # noqa: BLE001 - the client went away; the receive side sees it too
                self.gone = True
                return

    async def close(self, code: Optional[int], reason: str) -> None:
        """Send what is queued (unless the client stalled or left), then the close frame."""
        if code is not None and not self.stalled.is_set() and not self.gone:
            try:
                await asyncio.wait_for(self.queue.put(None), DRAIN_S)
                await asyncio.wait_for(asyncio.shield(self.task), DRAIN_S)
            except asyncio.TimeoutError:
                pass
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        if code is not None and not self.gone:
            try:
                await asyncio.wait_for(self.websocket.close(code, reason), 1.0)
            except Exception:  # noqa: BLE001 - a client that does not read cannot be told
                pass


def add_realtime(app: FastAPI, readiness) -> RealtimeState:
    """Register `/v1/realtime` on the server mode's app; its state is `app.state.realtime`."""
    state = RealtimeState()
    app.state.realtime = state

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket):
        await _serve(websocket, readiness, state)

    return state


def _models(settings) -> Tuple[str, ...]:
    names = (settings.served_model_name, settings.model) + MODEL_ALIASES
    return tuple(dict.fromkeys(names))


async def _refuse(websocket: WebSocket, code: int, reason: str, error: ProtocolError, kind: str = "invalid_request_error") -> None:
    """Refuse a session after the upgrade, as every client (a browser too) can read it: one
    `error` event, then the close code."""
    try:
        await websocket.accept()
        await websocket.send_text(json.dumps({"type": "error", "event_id": "event_1", **error_event(error, kind=kind)}))
        await websocket.close(code, reason)
    except Exception:  # noqa: BLE001 - the client left first: nobody to tell
        pass


async def _serve(websocket: WebSocket, readiness, state: RealtimeState) -> None:
    service = readiness.service
    if service is None:
        return await _refuse(websocket, 1013, "the model is still loading; try again later",
                             ProtocolError("the model is still loading; try again shortly", code="loading"), "server_error")
    intent = websocket.query_params.get("intent")
    if intent not in (None, "transcription"):
        return await _refuse(websocket, 1008, "transcription sessions only",
                             ProtocolError(f"this server holds transcription sessions only (intent=transcription), not {intent[:40]!r}", "intent"))
    settings = service.settings
    if len(state.sessions) >= settings.realtime_sessions:
        return await _refuse(websocket, 1013, "too many sessions; try again later",
                             ProtocolError(f"all {settings.realtime_sessions} live sessions are open; try again later", code="session_limit"),
                             "server_error")
    await websocket.accept()
    name = f"live-{next(state.numbers)}"
    outgoing = Outgoing(websocket)
    session = LiveSession(outgoing.put, ServiceTranscriber(service, state, name), _models(settings), settings.realtime_max_buffer_seconds)
    state.sessions.add(session)
    code, reason = 1011, "internal error"
    try:
        await session.start()
        code, reason = await _receive(websocket, session, outgoing, settings.realtime_idle_timeout)
    except Exception:  # noqa: BLE001 - a bug: logged, the session closed with 1011
        log.exception("live session %s failed", name)
    finally:
        await session.close()
        state.sessions.discard(session)
        await outgoing.close(code, reason)


async def _receive(websocket: WebSocket, session: LiveSession, outgoing: Outgoing, idle_timeout: float) -> Tuple[Optional[int], str]:
    """Client messages into the session until the client leaves (None) or the server closes it:
    (close code, reason)."""
    stalled = asyncio.ensure_future(outgoing.stalled.wait())
    try:
        while True:
            if outgoing.stalled.is_set():
                return 1008, "the client does not read its events"
            message = asyncio.ensure_future(websocket.receive())
            done, _ = await asyncio.wait({message, stalled}, timeout=idle_timeout, return_when=asyncio.FIRST_COMPLETED)
            if message not in done:
                message.cancel()
                if stalled in done:
                    continue
                await session.error(ProtocolError(f"no client event for {idle_timeout:g} s; the session is closed", code="idle_timeout"))
                return 1000, "idle timeout"
            received = message.result()
            if received["type"] == "websocket.disconnect":
                return None, ""
            text = received.get("text")
            if text is None:
                await session.handle_binary()
            elif len(text) > MAX_MESSAGE_BYTES:
                return 1009, f"a message may hold at most {MAX_MESSAGE_BYTES} bytes"
            else:
                await session.handle_text(text)
    finally:
        stalled.cancel()
