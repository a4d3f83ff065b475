"""A Whisper transcription worker for RunPod serverless: one package per stage of a job's path
(request -> audio -> decoding, speakers beside it -> formats), one Service over them (service.py)
and two entries into it (entries/: the RunPod handler and the OpenAI-compatible HTTP server)."""
