"""Transcribe many files or URLs concurrently: submit every job with /run, then wait for all.
One failed file does not stop the others; the exit code says whether any failed.

    python examples/client_batch.py a.mp3 b.wav https://example.com/c.flac --workers 8 --out transcripts/
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rp_client import JobFailed, audio_input, connect, result, wait


def transcribe(endpoint, source: str, timeout: float) -> str:
    job = endpoint.run(audio_input(source, "run"))
    return result(wait(endpoint, job.job_id, timeout=timeout))["text"].strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="+", help="URLs or local files")
    parser.add_argument("--workers", type=int, default=4, help="jobs in flight at once")
    parser.add_argument("--out", type=Path, help="write NAME.txt files here instead of printing")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    endpoint = connect()
    failures = 0
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        futures = {source: pool.submit(transcribe, endpoint, source, args.timeout) for source in args.audio}
        for source, future in futures.items():
            try:
                text = future.result()
            except (JobFailed, TimeoutError, OSError, ValueError) as exc:
                failures += 1
                print(f"FAILED {source}: {exc}", file=sys.stderr)
                continue
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"{Path(source).stem}.txt").write_text(text + "\n")
            print(f"{source}\t{text}")
    print(f"{len(args.audio) - failures} of {len(args.audio)} transcribed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
