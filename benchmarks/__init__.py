"""Benchmarks for the Whisper worker: engine comparison (`compare`) and weight export (`export-hf`)."""
