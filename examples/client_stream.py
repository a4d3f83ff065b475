"""Print segments as they are decoded. Needs a worker started with WHISPER_STREAMING=true (its
handler is then a generator); the job asks for it with "stream": true.

    python examples/client_stream.py https://github.com/SYSTRAN/faster-whisper/raw/master/tests/data/jfk.flac
"""

from __future__ import annotations

import argparse
import sys
import time

from rp_client import FINAL, audio_or_exit, cancel, connect, status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", help="URL or local file")
    parser.add_argument("--timeout", type=float, default=3600, help="give up (and cancel the job) after this many seconds")
    args = parser.parse_args(argv)
    job_input = audio_or_exit(args.audio, "run")
    endpoint = connect()
    job = endpoint.run({**job_input, "stream": True})
    deadline = time.monotonic() + args.timeout
    final = None
    for event in job.stream():  # the SDK polls /stream/{id}, yields each chunk, stops at a final status
        if time.monotonic() > deadline:
            print(f"gave up after {args.timeout:.0f} s; " + ("job cancelled" if cancel(endpoint, job.job_id) else "cancel failed"), file=sys.stderr)
            return 1
        if not isinstance(event, dict):
            continue
        if "error" in event:
            # in streaming mode the SDK (1.12) reduces a failed job to {"error": text}: no error_code
            print(f"transcription failed: {event['error']}", file=sys.stderr)
            return 1
        if event.get("type") == "segment":
            segment = event["segment"]
            print(f"[{segment['start']:7.2f} -> {segment['end']:7.2f}] {segment['text'].strip()}", flush=True)
        elif event.get("type") == "result":
            final = event
    if final is None:
        return _explain_missing_result(status(endpoint, job.job_id))
    print(f"language={final.get('language')} duration={final.get('duration')}", file=sys.stderr)
    return 0


def _explain_missing_result(state: dict) -> int:
    """The stream ended without a result: say why, from the job's final status."""
    job_status = state.get("status")
    output = state.get("output")
    error = state.get("error") or (output.get("error") if isinstance(output, dict) else None)
    if isinstance(output, list):  # an aggregated stream: the last item is the result or the error
        error = error or next((item.get("error") for item in reversed(output) if isinstance(item, dict) and "error" in item), None)
    if error:
        print(f"transcription failed ({job_status}): {error}", file=sys.stderr)
    elif job_status in ("CANCELLED", "TIMED_OUT"):
        print(f"the job was {job_status.lower().replace('_', ' ')}", file=sys.stderr)
    elif job_status in FINAL:
        print(f"the job ended {job_status} without streaming segments (is WHISPER_STREAMING=true on the worker?)", file=sys.stderr)
    else:
        print(f"the stream ended while the job is {job_status}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
