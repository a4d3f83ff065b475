"""Who spoke when: diarization backends (audio in, turns out), voiceprints, speakers put on words."""
