"""Live transcription: the pieces a realtime session is made of (turn detection on streamed audio,
the partial-text policy, the session and its events), below the WebSocket entry that serves them."""
