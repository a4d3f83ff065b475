"""The one adapter that touches faster-whisper's non-public code, so that a faster-whisper upgrade
means re-checking this package (and its tests) only.

What the worker takes from faster-whisper (1.2.x), and where:
- options.py: `tokenizer._LANGUAGE_CODES` (the language codes a request may name);
  `TranscriptionOptions` and `get_suppressed_tokens` (the options object the library's own
  decoding functions read; the batching key is derived from all of its fields); `get_prompt`.
- features.py: the feature extractor, run in bounded blocks (the library computes the STFT of
  the whole file at once: gigabytes for hours).
- vad.py: `faster_whisper.vad.get_vad_model` replaced by a Silero runner that streams the audio in
  blocks (the library builds a second, 1.125x copy of the whole file first) and times itself per
  thread; the same Silero session finds where speech starts in a segment and the speech spans of
  audio still being decoded, by the library's own span rules. onnxruntime (Silero's runtime) has
  its telemetry switched off there before it loads.
- device.py: the CTranslate2 model's `generate`, `find_alignment` / `add_word_timestamps`, and
  `detect_language`: the device call of the worker's own batched long-form loop
  (worker/decoding/batched.py).
- sequential.py: `WhisperModel.transcribe`, run for sequential decoding with the block features.
Everything else (segment rules, windows, no-speech filtering) is the worker's own code.
"""
