"""The one adapter that touches faster-whisper's internals."""
