"""The streamed decode (DecodingAudio): the samples of the whole-file decode, whatever the header
declares; readers that wait for samples not decoded yet; a decode that stops when the job ends.

A gated source holds the decode thread at a byte offset, so each test knows what has been
decoded when it asks, instead of racing the decoder."""

from __future__ import annotations

import io
import threading
import time
import wave

import numpy as np
import pytest

from helpers import wait_until
from worker.audio.decode import SAMPLE_RATE, UNDECLARED_GUESS_SECONDS, DecodedAudio, DecodingAudio, decode_audio
from worker.errors import AudioError, AudioTooLong, Cancelled


class GatedSource(io.RawIOBase):
    """The bytes of a file, whose reads stop at `gate` until `release()`; optionally unseekable
    (a pipe), so the container can declare no duration."""

    def __init__(self, data: bytes, gate: int | None = None, seekable: bool = True):
        self._data = io.BytesIO(data)
        self._gate = gate
        self._seekable = seekable
        self.opened = threading.Event()
        self.waiting = threading.Event()  # a read is held at the gate

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def seek(self, offset, whence=io.SEEK_SET):
        if not self._seekable:
            raise OSError("not seekable")
        return self._data.seek(offset, whence)

    def tell(self):
        return self._data.tell()

    def readinto(self, buffer) -> int:
        if self._gate is not None and self._data.tell() + len(buffer) > self._gate:
            self.waiting.set()
            self.opened.wait(30)
        data = self._data.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def release(self) -> None:
        self.opened.set()


def returns_within(seconds: float, call):
    """call() run in a thread: (True, its result or exception) if it returned in time, else (False, None)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return (not thread.is_alive(), outcome.get("value")), thread


def gated(data_dir, gate_fraction: float = 0.1):
    data = (data_dir / "long" / "silero_test.wav").read_bytes()  # 60 s, read front to back
    source = GatedSource(data, gate=int(len(data) * gate_fraction))
    return source, DecodingAudio(source, 3600)


@pytest.mark.parametrize("name", ["jfk.flac", "long/columbia.wma", "multilingual.mp3", "long/silero_test.wav"])
def test_a_streamed_decode_gives_the_samples_of_the_whole_file_decode(data_dir, name):
    path = str(data_dir / name)
    streamed = DecodingAudio(path, 3600)
    assert np.array_equal(streamed.result(), decode_audio(path, 3600))
    assert streamed.seconds > 0


def test_a_streamed_decode_refuses_what_the_whole_file_decode_refuses(data_dir, tmp_path):
    with pytest.raises(AudioTooLong):  # declared in the header: at once
        DecodingAudio(str(data_dir / "hotwords.mp3"), 1.0)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not audio at all" * 100)
    with pytest.raises(AudioError):
        DecodingAudio(str(junk), 3600)


def silent_wav(path, samples: int) -> str:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(b"\0\0" * samples)
    return str(path)


@pytest.mark.parametrize("samples", [16000, 4 * 4096])  # the second ends exactly where a piece is handed on
def test_silence_and_emptiness_are_told_apart_as_the_whole_file_decode_tells_them(tmp_path, samples):
    with pytest.raises(AudioError, match="^audio: is silent"):
        DecodingAudio(silent_wav(tmp_path / "silent.wav", samples), 3600).result()
    with pytest.raises(AudioError, match="^audio: contains no audio samples"):
        DecodingAudio(silent_wav(tmp_path / "empty.wav", 0), 3600).result()


def test_samples_in_memory_read_the_way_streamed_ones_do(data_dir):
    path = str(data_dir / "jfk.flac")
    streamed, in_memory = DecodingAudio(path, 3600), DecodedAudio(decode_audio(path, 3600))
    assert in_memory.wait_for(1) == in_memory.wait_for(1 << 40) == streamed.wait_for(1 << 40) == 11 * SAMPLE_RATE
    assert np.array_equal(in_memory.view(100, 16100), streamed.view(100, 16100))
    assert np.array_equal(in_memory.result(), streamed.result()) and in_memory.finished


def test_a_path_that_cannot_be_read_is_an_error_on_the_audio_field(tmp_path):
    with pytest.raises(AudioError) as missing:
        DecodingAudio(str(tmp_path / "missing.wav"), 3600)
    assert str(missing.value) == "audio: cannot read the audio file: No such file or directory"
    assert missing.value.field == "audio"
    with pytest.raises(AudioError, match="^audio: cannot read the audio file: Is a directory$"):
        DecodingAudio(str(tmp_path), 3600)


def test_a_header_that_tells_the_duration_sizes_the_buffer_once(data_dir):
    """60 s declared: room for 61 s from the start, and the samples are never copied to a new buffer."""
    audio = DecodingAudio(str(data_dir / "long" / "silero_test.wav"), 3600)
    assert audio.reserved_samples == 61 * SAMPLE_RATE
    audio.wait_for(SAMPLE_RATE)
    first = audio.view(0, SAMPLE_RATE)
    samples = audio.result()
    assert samples.size == 60 * SAMPLE_RATE and samples.dtype == np.float32
    assert np.shares_memory(first, samples)  # the same array all along: no growth, no copy


def test_a_file_holding_more_than_its_header_declares_is_decoded_whole(data_dir, tmp_path):
    """Two MP3s joined end to end (a podcast's parts put together with cat): the first file's
    header leads the demuxer to declare 19 s for the whole, the rate and channels change at the
    join, and the buffer has to grow to hold 63.9 s; the samples equal the whole-file decode's."""
    joined = tmp_path / "joined.mp3"
    joined.write_bytes((data_dir / "hotwords.mp3").read_bytes() + (data_dir / "multilingual.mp3").read_bytes())
    audio = DecodingAudio(str(joined), 3600)
    reserved_at_start = audio.reserved_samples
    audio.wait_for(SAMPLE_RATE)
    first = audio.view(0, SAMPLE_RATE).copy()
    samples = audio.result()
    assert reserved_at_start <= 21 * SAMPLE_RATE  # what the header said, not what it held
    assert samples.size / SAMPLE_RATE == pytest.approx(4.0 + 59.9, abs=0.1)
    assert audio.reserved_samples >= samples.size
    assert np.array_equal(samples, decode_audio(str(joined), 3600)) and samples.dtype == np.float32
    assert np.array_equal(samples[:SAMPLE_RATE], first)  # what readers saw before the growth stays


def test_a_source_that_declares_nothing_grows_from_the_guess(data_dir):
    """A pipe (no seeking) lets the container declare no duration: room for the guess at first,
    doubled when two minutes arrive, samples equal to the whole-file decode's."""
    data = (data_dir / "multilingual.mp3").read_bytes() * 2  # 119.9 s, nothing declared through a pipe
    audio = DecodingAudio(GatedSource(data, seekable=False), 3600)
    assert audio.reserved_samples == int((UNDECLARED_GUESS_SECONDS + 1) * SAMPLE_RATE)
    samples = audio.result()
    assert samples.size / SAMPLE_RATE == pytest.approx(119.86, abs=0.05)
    assert audio.reserved_samples == 2 * int((UNDECLARED_GUESS_SECONDS + 1) * SAMPLE_RATE)  # doubled once
    assert np.array_equal(samples, decode_audio(data, 3600)) and samples.dtype == np.float32  # float32 after growing


def test_a_limit_met_while_decoding_leaves_what_was_decoded_readable(data_dir):
    """Nothing declared, so the 10 s limit is met mid-file: readers get every sample up to it;
    the first to ask beyond it gets the limit's error."""
    data = (data_dir / "multilingual.mp3").read_bytes()
    audio = DecodingAudio(GatedSource(data, seekable=False), 10)
    with pytest.raises(AudioTooLong, match="longer than the 10 s limit"):
        audio.result()
    decoded = audio.wait_for(0)
    assert 9 * SAMPLE_RATE < decoded <= 10 * SAMPLE_RATE
    assert audio.wait_for(decoded) == decoded  # all of it is there
    with pytest.raises(AudioTooLong):
        audio.wait_for(decoded + 1)


def test_readers_get_what_is_decoded_at_once_and_wait_for_the_rest(data_dir):
    source, audio = gated(data_dir)
    assert source.waiting.wait(10)  # the decode thread is held at the gate
    decoder = [thread for thread in threading.enumerate() if thread.name == "whisper-decode"]
    assert len(decoder) == 1 and decoder[0].daemon  # named for thread dumps; never keeps the process alive
    available = audio.wait_for(0)
    assert 0 < available < 60 * SAMPLE_RATE
    assert not audio.finished and audio.seconds == 0.0
    (returned, value), _ = returns_within(1.0, lambda: audio.wait_for(available))
    assert returned and value == available  # no wait for samples already there
    (returned, _), waiter = returns_within(0.3, lambda: audio.wait_for(available + 1))
    assert not returned  # waits while nothing new is decoded
    started = time.perf_counter()
    source.release()
    waiter.join(10)
    assert not waiter.is_alive()
    samples = audio.result()
    assert audio.finished and 0 < audio.seconds < time.perf_counter() - started + 30
    assert np.array_equal(samples, decode_audio(str(data_dir / "long" / "silero_test.wav"), 3600))


def test_a_cancelled_job_stops_waiting_readers_and_the_decode(data_dir):
    data = (data_dir / "long" / "silero_test.wav").read_bytes()
    source = GatedSource(data, gate=len(data) // 10)
    cancelled = threading.Event()
    audio = DecodingAudio(source, 3600, cancelled)
    assert source.waiting.wait(10)
    (returned, _), waiter = returns_within(0.2, lambda: audio.wait_for(30 * SAMPLE_RATE))
    assert not returned
    cancelled.set()
    waiter.join(0.6)  # seen at the reader's next poll, not at the decoder's next sample
    assert not waiter.is_alive()
    with pytest.raises(Cancelled, match="^job cancelled while decoding$"):
        audio.wait_for(30 * SAMPLE_RATE)
    source.release()
    assert ends_before_the_end(audio)
    with pytest.raises(Cancelled, match="^job cancelled while decoding$"):  # the decode thread's own stop
        audio.result()


def test_closing_stops_the_decode_before_the_end(data_dir):
    source, audio = gated(data_dir)
    assert source.waiting.wait(10)
    audio.close()
    source.release()
    assert ends_before_the_end(audio)


def ends_before_the_end(audio: DecodingAudio) -> bool:
    """Whether the decode thread ends within 10 s with less than the 60 s file decoded."""
    return wait_until(lambda: audio.finished, 10) and audio.wait_for(0) < 60 * SAMPLE_RATE
