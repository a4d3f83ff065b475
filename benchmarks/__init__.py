"""Benchmarks for the Whisper worker, run as `python -m benchmarks <command>` (benchmarks/cli.py lists
the commands, benchmarks/README.md describes them): engines, long audio, diarization, the job
pipeline, load on the HTTP API, and the one-call GPU evaluation."""
