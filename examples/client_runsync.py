"""Transcribe one file or URL with /runsync and print the text (or the worker's error).

    python examples/client_runsync.py https://github.com/SYSTRAN/faster-whisper/raw/master/tests/data/jfk.flac
    python examples/client_runsync.py interview.mp3 --language en --word-timestamps
"""

from __future__ import annotations

import argparse
import json
import sys

from rp_client import JobFailed, audio_or_exit, connect, run_sync


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", help="URL or local file")
    parser.add_argument("--language", help="ISO 639-1 code; omit to detect")
    parser.add_argument("--word-timestamps", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the whole verbose_json output")
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args(argv)
    job_input = audio_or_exit(args.audio, "runsync")
    if args.language:
        job_input["language"] = args.language
    if args.word_timestamps:
        job_input["word_timestamps"] = True
    try:
        output = run_sync(connect(), job_input, timeout=args.timeout)
    except JobFailed as exc:
        print(f"transcription failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(output, indent=2) if args.json else output["text"].strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
