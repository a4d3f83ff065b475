"""Hostile input: property-based schema tests and fuzzed audio bytes in every accepted container.

Case counts (normal run): 1500 random request objects + 300 per-field cases, and for audio
200 random byte strings + 120 mutations (truncation, byte flips, splices, header-only) of each of 7 containers
= 1,040 audio cases, plus crafted headers with absurd rates, channels and durations. Each case
must end in a result or the worker's own error, within the deadline, with bounded output size.
`FUZZ_SCALE=10` multiplies the counts for a longer run.
"""

import os
import re
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import encode_audio
from worker.audio.decode import SAMPLE_RATE, decode_audio
from worker.config import Settings
from worker.errors import AudioError, RequestError
from worker.request.schema import TranscriptionRequest, parse_request

SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
MAX_SECONDS = 60.0
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
FIELDS = sorted(set(TranscriptionRequest.model_fields) | {"transcription", "translate", "translation", "enable_vad",
                                                          "logprob_threshold", "temperature_increment_on_fallback", "model"})


def parse_or_field_error(job_input):
    try:
        return parse_request(job_input, Settings())
    except RequestError as exc:
        assert exc.field, f"error without a field: {exc}"
        assert str(exc).startswith(exc.field)
        return exc


@settings(max_examples=1500 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values, max_size=8))
def test_any_request_object_is_valid_or_a_clear_field_error(job_input):
    parse_or_field_error(job_input)


@settings(max_examples=300 * SCALE, deadline=None)
@given(st.sampled_from(FIELDS), json_values)
def test_any_value_for_any_field(field, value):
    result = parse_or_field_error({"audio": "https://example.com/a.wav", field: value})
    if isinstance(result, RequestError) and field not in ("audio", "audio_base64"):
        assert re.split(r"[.\[]", result.field)[0] in (field, "audio", "audio_base64", "temperature", "response_format", "stream") , result


@given(json_values)
@settings(max_examples=100 * SCALE, deadline=None)
def test_any_json_value_as_the_whole_input(value):
    parse_or_field_error(value)


# -- audio ---------------------------------------------------------------------------------

CONTAINERS = {  # name: (container format, codec, sample rate)
    "wav": ("wav", "pcm_s16le", 16000),
    "flac": ("flac", "flac", 16000),
    "mp3": ("mp3", "libmp3lame", 44100),
    "ogg-opus": ("ogg", "libopus", 48000),
    "m4a-aac": ("ipod", "aac", 44100),
    "webm-opus": ("webm", "libopus", 48000),
    "wma": ("asf", "wmav2", 44100),
}


def encode_clip(seconds: float, fmt: str, codec: str, rate: int) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return encode_audio(0.3 * np.sin(2 * np.pi * 220 * t), rate, fmt, codec)


@pytest.fixture(scope="module")
def clips():
    return {name: encode_clip(2.0, fmt, codec, rate) for name, (fmt, codec, rate) in CONTAINERS.items()}


def decode_bounded(payload: bytes, deadline_s: float = 10.0):
    started = time.monotonic()
    try:
        samples = decode_audio(payload, MAX_SECONDS)
    except AudioError:
        samples = None
    elapsed = time.monotonic() - started
    assert elapsed < deadline_s, f"decoding took {elapsed:.1f} s"
    if samples is not None:
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert samples.size <= MAX_SECONDS * SAMPLE_RATE
        assert np.isfinite(samples).all()
    return samples


def test_every_container_decodes_when_intact(clips):
    for name, payload in clips.items():
        samples = decode_bounded(payload)
        assert samples is not None and abs(samples.size / SAMPLE_RATE - 2.0) < 0.2, name


@settings(max_examples=200 * SCALE, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash(payload):
    decode_bounded(payload)


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_mutated_files_never_crash(clips, name):
    payload = clips[name]

    @settings(max_examples=120 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.data())
    def mutate(data):
        kind = data.draw(st.sampled_from(["truncate", "flip", "splice", "header-only"]))
        body = bytearray(payload)
        if kind == "truncate":
            body = body[: data.draw(st.integers(0, len(body)))]
        elif kind == "flip":
            for _ in range(data.draw(st.integers(1, 64))):
                body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
        elif kind == "splice":
            at = data.draw(st.integers(0, len(body)))
            body = body[:at] + data.draw(st.binary(min_size=1, max_size=512)) + body[at:]
        else:
            body = body[: min(len(body), data.draw(st.integers(4, 128)))]
        decode_bounded(bytes(body))

    mutate()


def wav_header(rate: int, channels: int, bits: int, data_bytes: int, payload: bytes = b"") -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, min(rate * block, 2**32 - 1), min(block, 2**16 - 1), bits)
    return b"RIFF" + struct.pack("<I", min(36 + data_bytes, 2**32 - 1)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_bytes) + payload


@pytest.mark.parametrize("rate, channels, bits, data_bytes", [
    (1, 1, 16, 2**32 - 1),          # absurd duration: 4 GB at 1 Hz declares ~68 years
    (4_000_000_000, 1, 16, 1000),   # absurd sample rate
    (16000, 65535, 16, 1000),       # absurd channel count
    (16000, 1, 16, 2**32 - 1),      # declares 37 hours, carries 1 KB
    (8000, 1, 8, 1000), (192000, 2, 24, 6000), (96000, 8, 32, 32000),
])
def test_absurd_headers_are_refused_or_bounded(rate, channels, bits, data_bytes):
    noise = (np.random.default_rng(0).integers(-2000, 2000, 4000).astype(np.int16)).tobytes()
    decode_bounded(wav_header(rate, channels, bits, data_bytes, noise))


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 48000, 96000, 192000])
def test_sample_rates_8k_to_192k(rate):
    samples = decode_bounded(encode_clip(1.0, "wav", "pcm_s16le", rate))
    assert samples is not None and abs(samples.size - SAMPLE_RATE) <= 32


def test_many_channels_are_mixed_down():
    t = np.arange(16000) / 16000
    samples = decode_bounded(encode_audio(np.tile(0.2 * np.sin(2 * np.pi * 300 * t), (6, 1)), 16000, layout="5.1"))
    assert samples is not None and samples.size == 16000


# -- containers that name other files and sockets ------------------------------------------

def referencing_payloads(target: str):
    """Bytes whose demuxers open what they name: playlists, concat lists, session descriptions."""
    return {
        "hls": f"#EXTM3U\n#EXT-X-TARGETDURATION:11\n#EXTINF:11,\nfile://{target}\n#EXT-X-ENDLIST\n".encode(),
        "hls-relative": f"#EXTM3U\n#EXT-X-TARGETDURATION:11\n#EXTINF:11,\n{target}\n#EXT-X-ENDLIST\n".encode(),
        "concat": f"ffconcat version 1.0\nfile '{target}'\n".encode(),
        "concat-self": b"ffconcat version 1.0\nfile 'pipe:0'\nfile 'file:/proc/self/fd/0'\n",
        "sdp": b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n",
        "rtp-sdp-many": b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n" + b"".join(b"m=audio %d RTP/AVP 0\n" % p for p in range(6000, 6400, 2)),
        "ffmetadata": b";FFMETADATA1\ntitle=x\n",
        "subviewer-url": b"[INFORMATION]\n[TITLE]x\n[AUTHOR]file:///etc/passwd\n",
    }


@pytest.mark.parametrize("name", list(referencing_payloads("/x")))
def test_containers_that_reference_files_or_sockets_are_refused_without_touching_them(name, data_dir, monkeypatch, tmp_path):
    """Only real containers open, with no protocol: nothing named inside the bytes is opened.
    Opened files and sockets are counted from outside FFmpeg, through /proc/self/fd."""
    import os

    target = str(data_dir / "jfk.flac")
    payload = referencing_payloads(target)[name]
    before = set(os.listdir("/proc/self/fd"))
    seen = []
    for source in (payload, str(tmp_path / "upload")):
        if isinstance(source, str):
            (tmp_path / "upload").write_bytes(payload)
        with pytest.raises(AudioError) as info:
            decode_audio(source, MAX_SECONDS)
        assert "not a supported audio or video container" in str(info.value) or "no audio" in str(info.value), str(info.value)
        assert "jfk" not in str(info.value)
        seen.append(str(info.value))
    assert seen[0] == seen[1]  # the same answer whether the path exists or not: nothing probed it
    links = {os.readlink(f"/proc/self/fd/{fd}") for fd in set(os.listdir("/proc/self/fd")) - before if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not any("jfk" in link or "socket:" in link for link in links), links


def test_the_container_whitelist_still_takes_every_real_format(clips, data_dir):
    for name in ("jfk.flac", "hotwords.mp3", "long/columbia.wma", "fleurs/fleurs-de-000.ogg", "stereo_diarization.wav"):
        assert decode_audio(str(data_dir / name), 600).size > 16000, name


# -- numbers that reach CTranslate2 ----------------------------------------------------------

NUMERIC = {
    "patience": st.floats(allow_nan=True, allow_infinity=True),
    "repetition_penalty": st.floats(allow_nan=True, allow_infinity=True),
    "length_penalty": st.floats(allow_nan=True, allow_infinity=True),
    "beam_size": st.integers(-5, 40),
    "no_repeat_ngram_size": st.integers(-5, 200),
    "temperature": st.floats(allow_nan=True, allow_infinity=True),
    "no_speech_threshold": st.floats(allow_nan=True, allow_infinity=True),
    "suppress_tokens": st.lists(st.integers(-2**40, 2**40) | st.integers(50000, 52000), min_size=1, max_size=4),
    "temperature_increment_on_fallback": st.floats(allow_nan=True, allow_infinity=True) | st.floats(1e-300, 1e-3),
}


@pytest.fixture(scope="module")
def short_clip():
    from helpers import DATA

    return decode_audio(str(DATA / "hotwords.mp3"), 60.0)


@pytest.mark.samples  # temperatures are among the numbers; it checks what holds for any draw
@settings(max_examples=40 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(sorted(NUMERIC)).flatmap(lambda name: st.tuples(st.just(name), NUMERIC[name])), st.sampled_from([1, 4]))
def test_any_number_is_refused_by_name_or_decodes(tiny_service, short_clip, option, batch_size):
    """No value of a numeric option may crash the process, corrupt memory or raise a trace."""
    name, value = option
    job = {"audio": "x", name: value, "batch_size": batch_size}
    if name == "temperature_increment_on_fallback":
        job = {"audio": "x", name: value, "temperature": 0.0}  # a legacy request
    try:
        request = parse_request(job, tiny_service.settings)
        tiny_service.engine.check(request)
    except RequestError as exc:
        assert exc.field in (name, "temperature", "suppress_tokens"), exc
        return
    started = time.monotonic()
    transcript = tiny_service.engine.transcribe(short_clip, request)
    assert isinstance(transcript.text, str) and time.monotonic() - started < 60
