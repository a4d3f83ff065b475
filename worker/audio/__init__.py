"""Audio in: fetch under limits (the URL guard), sources, decode to 16 kHz float32."""
