"""Speech to text, the decoding stage: one model loaded once, shared by every job, and the worker's
own long-form loop around it. engine (the stage's one entry), models (which weights, loaded how),
scheduler (batches across jobs), windows, segments and batched (where windows fall, the rules
segments follow, the job that feeds the device), whisper (the one adapter to faster-whisper)."""
