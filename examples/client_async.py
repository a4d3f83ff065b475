"""Submit with /run, then poll /status until the job ends: the pattern for long audio, since
/runsync waits only a limited time and /run results are kept 30 minutes after completion.

    python examples/client_async.py https://example.com/meeting.mp3 --response-format srt
"""

from __future__ import annotations

import argparse
import sys
import time

from rp_client import JobFailed, audio_or_exit, connect, result, wait


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", help="URL or local file")
    parser.add_argument("--response-format", default="verbose_json", choices=("json", "verbose_json", "text", "srt", "vtt"))
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    job_input = audio_or_exit(args.audio, "run")
    job_input["response_format"] = args.response_format
    endpoint = connect()
    job = endpoint.run(job_input)  # returns at once with the job id
    print(f"submitted job {job.job_id}", file=sys.stderr)
    started = time.monotonic()
    try:
        output = result(wait(endpoint, job.job_id, timeout=args.timeout))
    except (JobFailed, TimeoutError) as exc:
        print(f"transcription failed: {exc}", file=sys.stderr)
        return 1
    print(f"done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    print(output.get(args.response_format) or output["text"].strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
