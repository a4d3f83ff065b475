"""Pure rendering: transcript -> json / verbose_json / text / srt / vtt / the official worker's shape."""
