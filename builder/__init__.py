"""Build-time tools: put a verified CTranslate2 Whisper model where the image expects it."""
