"""Print segments as they are decoded. Needs a worker started with WHISPER_STREAMING=true (its
handler is then a generator); the job asks for it with "stream": true.

    python examples/client_stream.py https://github.com/SYSTRAN/faster-whisper/raw/master/tests/data/jfk.flac
"""

from __future__ import annotations

import argparse
import sys

from rp_client import audio_or_exit, connect


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", help="URL or local file")
    args = parser.parse_args(argv)
    job_input = audio_or_exit(args.audio, "run")
    job = connect().run({**job_input, "stream": True})
    final = None
    for event in job.stream():  # the SDK polls /stream/{id} and yields each chunk's output
        if not isinstance(event, dict):
            continue
        if "error" in event:
            print(f"transcription failed: {event['error']}", file=sys.stderr)
            return 1
        if event.get("type") == "segment":
            segment = event["segment"]
            print(f"[{segment['start']:7.2f} -> {segment['end']:7.2f}] {segment['text'].strip()}", flush=True)
        elif event.get("type") == "result":
            final = event
    if final is None:
        print("the stream ended without a result (is WHISPER_STREAMING=true on the worker?)", file=sys.stderr)
        return 1
    print(f"language={final.get('language')} duration={final.get('duration')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
