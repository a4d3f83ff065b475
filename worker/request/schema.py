"""The input schema: one typed request, every option declared once, clear errors naming the field.

Flow: `parse_request(job_input, settings)` maps the legacy names of runpod-workers/
worker-faster_whisper onto ours (worker/request/legacy.py), validates with pydantic (unknown fields refused), fills
settings-dependent defaults, then refuses option combinations the chosen mode would ignore.
The engine reads `decoding_options()`; nothing else turns fields into faster-whisper arguments.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from worker.config import Settings
from worker.languages import LANGUAGE_CODES
from worker.errors import RequestError
from worker.request.legacy import LEGACY_ONLY_FIELDS, LegacyOutput, check_model, take_legacy

DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MAX_TEMPERATURES = 20
# The most hypotheses one window may cost when every fallback runs (beam_size x patience at
# temperature 0, best_of at each higher one): the defaults cost 30; 20 temperatures x best_of 32
# cost 640 and made an 11 s clip take 100 s on a CPU. decodes_per_window() counts them.
MAX_DECODES_PER_WINDOW = 200
MAX_URL_LENGTH = 8192
MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class Option:
    """What a request field means beyond its type and bounds, kept on the field (Annotated) so each
    option is declared once; DECODING_FIELDS, SEQUENTIAL_ONLY, SUBTITLE_LAYOUT and SPEAKER_OPTIONS
    are read from it."""

    decoding: bool = False  # handed to faster-whisper's transcribe() unchanged, under the same name
    sequential_only: str = ""  # why batched decoding (worker/decoding/batched.py) refuses it when batch_size > 1
    subtitle_layout: bool = False  # lays out srt/vtt cues: needs a subtitle format and word timestamps
    needs_diarize: bool = False  # a speaker option: needs diarize=true


DECODING = Option(decoding=True)
SUBTITLE = Option(subtitle_layout=True)
SPEAKERS = Option(needs_diarize=True)

MAX_SPEAKERS = 20
MAX_KNOWN_SPEAKERS = 8
MAX_CHANNELS_TRANSCRIBED = 8  # multichannel: each channel is a transcription of its own



class VadParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    threshold: float = Field(0.5, ge=0.0, le=1.0)
    neg_threshold: Optional[float] = Field(None, ge=0.0, le=1.0)
    min_speech_duration_ms: int = Field(0, ge=0, le=60_000)
    # splits VAD speech spans; batched windows merge them again up to 30 s (1 s windows decode badly)
    max_speech_duration_s: float = Field(float("inf"), ge=1.0)
    min_silence_duration_ms: int = Field(2000, ge=0, le=600_000)
    speech_pad_ms: int = Field(400, ge=0, le=10_000)


class KnownSpeaker(BaseModel):
    """A voice to recognise: its name replaces the anonymous label of the voice it matches."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # Letters, digits, spaces and . ' - only: the name goes into SRT lines and WebVTT voice tags.
    name: str = Field(min_length=1, max_length=64, pattern=r"^\w[\w .'-]*$")
    audio: Optional[str] = Field(None, min_length=1, max_length=MAX_URL_LENGTH)
    audio_base64: Optional[str] = Field(None, min_length=1)


class TranscriptionRequest(BaseModel):
    """One job's input after validation. Field names are the public API (see README)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    audio: Optional[str] = Field(None, min_length=1, max_length=MAX_URL_LENGTH)
    audio_base64: Optional[str] = Field(None, min_length=1)
    language: Annotated[Optional[str], DECODING] = Field(None, max_length=32)
    task: Annotated[Literal["transcribe", "translate"], DECODING] = "transcribe"
    response_format: Literal["json", "verbose_json", "text", "srt", "vtt"] = "verbose_json"
    word_timestamps: Annotated[bool, DECODING] = False
    vad_filter: Annotated[bool, DECODING] = True
    vad_parameters: Optional[VadParameters] = None
    batch_size: Optional[int] = Field(None, ge=1, le=256)
    stream: bool = False
    beam_size: Annotated[int, DECODING] = Field(5, ge=1, le=32)
    best_of: Annotated[int, DECODING] = Field(5, ge=1, le=32)
    patience: Annotated[float, DECODING] = Field(1.0, gt=0.0, le=10.0)
    length_penalty: Annotated[float, DECODING] = Field(1.0, ge=0.0, le=10.0)
    repetition_penalty: Annotated[float, DECODING] = Field(1.0, ge=1.0, le=10.0)  # below 1 rewards repeating: Whisper loops
    no_repeat_ngram_size: Annotated[int, DECODING] = Field(0, ge=0, le=100)
    temperature: Annotated[Union[float, List[float]], DECODING] = list(DEFAULT_TEMPERATURES)
    # Thresholds that send every window through every fallback by construction are refused: a
    # text compresses to under its own size only when short (ratio < 1), and an average
    # log-probability is never above 0.
    compression_ratio_threshold: Annotated[Optional[float], DECODING] = Field(2.4, ge=1.0, le=100.0)
    log_prob_threshold: Annotated[Optional[float], DECODING] = Field(-1.0, ge=-100.0, lt=0.0)
    no_speech_threshold: Annotated[Optional[float], DECODING] = Field(0.6, ge=0.0, le=1.0)
    condition_on_previous_text: Annotated[bool, Option(decoding=True, sequential_only="batched decoding never conditions on previous text")] = True
    initial_prompt: Annotated[Optional[str], DECODING] = Field(None, max_length=MAX_PROMPT_CHARS)
    hotwords: Annotated[Optional[str], DECODING] = Field(None, max_length=MAX_PROMPT_CHARS)
    suppress_tokens: Annotated[List[int], DECODING] = Field(default_factory=lambda: [-1], max_length=1000)
    without_timestamps: Annotated[bool, DECODING] = False
    hallucination_silence_threshold: Annotated[Optional[float], Option(decoding=True, sequential_only="batched decoding does not skip hallucinated silences")] = Field(None, gt=0.0, le=3600.0)
    multilingual: Annotated[bool, DECODING] = False
    # Subtitle layout (srt/vtt, with word timestamps), as the OpenAI Whisper CLI offers it.
    max_line_width: Annotated[Optional[int], SUBTITLE] = Field(None, ge=1, le=1000)
    max_line_count: Annotated[Optional[int], SUBTITLE] = Field(None, ge=1, le=100)
    max_words_per_line: Annotated[Optional[int], SUBTITLE] = Field(None, ge=1, le=1000)
    # Speakers (worker/speakers/attribution.py): diarization, or one speaker per channel.
    diarize: bool = False
    num_speakers: Annotated[Optional[int], SPEAKERS] = Field(None, ge=1, le=MAX_SPEAKERS)
    min_speakers: Annotated[Optional[int], SPEAKERS] = Field(None, ge=1, le=MAX_SPEAKERS)
    max_speakers: Annotated[Optional[int], SPEAKERS] = Field(None, ge=1, le=MAX_SPEAKERS)
    # which diarizer: short windows for conversations and calls (default), overlap-aware for meetings
    diarization_model: Annotated[Optional[Literal["conversation", "meeting"]], SPEAKERS] = None
    known_speakers: Annotated[Optional[List[KnownSpeaker]], SPEAKERS] = Field(None, min_length=1, max_length=MAX_KNOWN_SPEAKERS)
    multichannel: bool = False
    # Set by parse_request for requests that use runpod-workers/worker-faster_whisper names.
    _legacy: Optional["LegacyOutput"] = PrivateAttr(None)

    @field_validator("temperature", mode="before")
    @classmethod
    def _int_temperature(cls, value: Any) -> Any:
        # Strict mode refuses 0 for a float; JSON clients write 0 as often as 0.0. (An int too
        # large for a float stays an int: the range check below refuses it.)
        def as_float(v: Any) -> Any:
            return float(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) <= 1000 else v

        return [as_float(v) for v in value] if isinstance(value, list) else as_float(value)

    @field_validator("temperature")
    @classmethod
    def _temperature_range(cls, value: Union[float, List[float]]) -> Union[float, List[float]]:
        values = temperature_list(value)
        if not values or len(values) > MAX_TEMPERATURES:
            raise ValueError(f"must be a number or a list of 1 to {MAX_TEMPERATURES} numbers")
        if any(not (0.0 <= v <= 2.0) for v in values):
            raise ValueError("every temperature must be between 0 and 2")
        return value

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return None
        code = value.strip().lower()
        if code not in LANGUAGE_CODES:
            raise ValueError(f"unknown language code {value!r}; use an ISO 639-1 code such as 'en', or omit it to detect")
        return code

    @property
    def legacy(self) -> Optional["LegacyOutput"]:
        return self._legacy

    @property
    def temperatures(self) -> List[float]:
        return temperature_list(self.temperature)

    def decodes_per_window(self) -> int:
        """Hypotheses one window costs when every fallback runs: beam search (beam_size, widened
        by patience) at temperature 0, best_of samples at each higher temperature."""
        return sum(max(1, math.ceil(self.beam_size * self.patience)) if t == 0 else self.best_of for t in self.temperatures)

    @property
    def subtitle_layout(self) -> dict:
        return {name: getattr(self, name) for name in SUBTITLE_LAYOUT}

    @property
    def wants_speakers(self) -> bool:
        return self.diarize or self.multichannel

    @property
    def is_batched(self) -> bool:
        return (self.batch_size or 1) > 1

    def decoding_options(self) -> "DecodingOptions":
        """What the decoding stage reads of this request, typed (see DecodingOptions)."""
        return DecodingOptions(
            **{name: getattr(self, name) for name in DECODING_FIELDS},
            vad_parameters=self.vad_parameters.model_dump(exclude_none=True) if self.vad_parameters else None,
            batch_size=self.batch_size if self.is_batched else 1,
        )


TranscriptionRequest.model_rebuild()

# Batched decoding's VAD parameters when a request gives none (faster-whisper's own for its batched
# mode): short pauses split speech so windows can be packed up to 30 s.
BATCHED_VAD_DEFAULTS = {"min_silence_duration_ms": 160}


@dataclass(frozen=True)
class DecodingOptions:
    """A request's decoding options as the decoding stage (worker/decoding) reads them: every value
    is the request's, so no default is declared a second time there. A field per option marked
    Option(decoding=True), so an option added to the request and not here fails at once.

    Read as a mapping, they are the keyword arguments of faster-whisper's transcribe() in its own
    names (batched: without the sequential-only ones, with batch_size): what sequential decoding
    hands on."""

    language: Optional[str]
    task: str
    word_timestamps: bool
    vad_filter: bool
    beam_size: int
    best_of: int
    patience: float
    length_penalty: float
    repetition_penalty: float
    no_repeat_ngram_size: int
    temperature: Union[float, List[float]]
    compression_ratio_threshold: Optional[float]
    log_prob_threshold: Optional[float]
    no_speech_threshold: Optional[float]
    condition_on_previous_text: bool
    initial_prompt: Optional[str]
    hotwords: Optional[str]
    suppress_tokens: List[int]
    without_timestamps: bool
    hallucination_silence_threshold: Optional[float]
    multilingual: bool
    vad_parameters: Optional[dict]  # the request's VadParameters (those set), None when it gives none
    batch_size: int  # 1: sequential decoding; more: the batched job's

    @property
    def is_batched(self) -> bool:
        return self.batch_size > 1

    @property
    def temperatures(self) -> List[float]:
        return temperature_list(self.temperature)

    @property
    def batched_vad_parameters(self) -> Optional[dict]:
        """The VAD parameters batched decoding runs Silero with (None: no VAD)."""
        if not self.vad_filter:
            return None
        return {**BATCHED_VAD_DEFAULTS, **(self.vad_parameters or {})}

    def arguments(self) -> dict:
        """The keyword arguments for faster-whisper's transcribe(), in its own names."""
        arguments = {name: getattr(self, name) for name in DECODING_FIELDS}
        arguments["vad_parameters"] = self.vad_parameters
        if self.is_batched:
            for name in SEQUENTIAL_ONLY:
                arguments.pop(name)
            arguments["batch_size"] = self.batch_size
        return arguments

    # the mapping: arguments() by name
    def keys(self):
        return self.arguments().keys()

    def __getitem__(self, name: str) -> Any:
        return self.arguments()[name]

    def __iter__(self):
        return iter(self.arguments())

    def __len__(self) -> int:
        return len(self.arguments())


def temperature_list(temperature: Union[float, List[float]]) -> List[float]:
    """The fallback temperatures, as both request shapes give them (a number or a list)."""
    return list(temperature) if isinstance(temperature, list) else [temperature]


def temperature_steps(start: Any, increment: Any) -> List[float]:
    """worker-faster_whisper's fallback schedule: start, start + increment, ... up to 1.0 (as
    numpy.arange(start, 1 + 1e-6, increment)), counted before it is built, so a tiny increment
    is refused instead of building millions of steps."""
    if not _finite_number(increment) or increment <= 0:
        raise RequestError("must be a positive number or null", field="temperature_increment_on_fallback")
    if not _finite_number(start) or not 0.0 <= start <= 1.0:
        raise RequestError("must be a number from 0 to 1 when temperature_increment_on_fallback is given", field="temperature")
    steps = (1.0 + 1e-6 - start) / increment  # inf for the tiniest increments
    if steps > MAX_TEMPERATURES:
        raise RequestError(f"gives more than {MAX_TEMPERATURES} temperatures from {start:g} to 1; use an increment of at least "
                           f"{max((1.0 - start) / (MAX_TEMPERATURES - 1), 1e-6):.4g}", field="temperature_increment_on_fallback")
    return [round(float(start) + index * float(increment), 6) for index in range(math.ceil(steps))]


OPTIONS = {name: next((fact for fact in info.metadata if isinstance(fact, Option)), Option())
           for name, info in TranscriptionRequest.model_fields.items()}
DECODING_FIELDS = tuple(name for name, option in OPTIONS.items() if option.decoding)
SEQUENTIAL_ONLY = {name: option.sequential_only for name, option in OPTIONS.items() if option.sequential_only}
SUBTITLE_LAYOUT = tuple(name for name, option in OPTIONS.items() if option.subtitle_layout)
SPEAKER_OPTIONS = tuple(name for name, option in OPTIONS.items() if option.needs_diarize)


def parse_request(job_input: Any, settings: Settings, uploaded: bool = False) -> TranscriptionRequest:
    """Validate one job's input; every failure is a RequestError naming the field. `uploaded`:
    the audio came as a file (the OpenAI server mode), so the input names none."""
    if not isinstance(job_input, dict):
        raise RequestError(f"must be a JSON object, got {_json_type(job_input)}", field="input")
    data = dict(job_input)
    renamed: dict = {}  # our name -> the legacy name the client sent, so errors name what was sent
    legacy = take_legacy(data, renamed) if LEGACY_ONLY_FIELDS & data.keys() else None
    if legacy is not None:
        check_model(legacy.pop("model", None), settings)
        increment = legacy.pop("increment")
        if increment is not None:
            data["temperature"] = temperature_steps(data.get("temperature", 0.0), increment)
        data.setdefault("batch_size", 1)  # that worker decodes sequentially
    try:
        request = TranscriptionRequest.model_validate(data)
        if legacy is not None:
            request._legacy = LegacyOutput.model_validate(legacy)
    except ValidationError as exc:
        raise _as_request_error(exc, renamed) from None
    except (ArithmeticError, RecursionError, MemoryError, TypeError, ValueError) as exc:
        # a value a validator could not even look at (an int too large for a float, nesting
        # deeper than Python recurses): refused by name all the same
        raise RequestError(f"cannot be read ({type(exc).__name__})", field=renamed.get(_culprit(data), _culprit(data))) from None
    if uploaded:
        for name in ("audio", "audio_base64"):
            if getattr(request, name) is not None:
                raise RequestError("send the audio as the `file` part, not as a field", field=name)
    else:
        _check_audio_source(request)
    if request.batch_size is None:
        request.batch_size = settings.batch_size
    _check_mode(request)
    if request.stream and not settings.streaming:
        raise RequestError("streaming is disabled on this endpoint (set WHISPER_STREAMING=true)", field="stream")
    return request


def _culprit(data: dict) -> str:
    """The field whose value alone makes validation fail with something other than a field error."""
    for name, value in data.items():
        try:
            TranscriptionRequest.model_validate({name: value})
        except ValidationError:
            continue
        except Exception:  # noqa: BLE001 - this is the one
            return name
    return "input"


def _check_audio_source(request: TranscriptionRequest) -> None:
    given = [name for name in ("audio", "audio_base64") if getattr(request, name)]
    if not given:
        raise RequestError("give audio (a URL) or audio_base64", field="audio")
    if len(given) == 2:
        raise RequestError("give audio or audio_base64, not both", field="audio_base64")


def _check_mode(request: TranscriptionRequest) -> None:
    """Refuse what the chosen decoding mode would silently ignore."""
    explicit = request.model_fields_set
    if request.is_batched:
        for name, why in SEQUENTIAL_ONLY.items():
            # Values that ask for what batched decoding does anyway (false, null) are fine.
            value = getattr(request, name)
            if name in explicit and value is not False and value is not None:
                raise RequestError(f"{why}; send batch_size=1 for sequential decoding", field=name)
    for name in SUBTITLE_LAYOUT:
        if getattr(request, name) is None:
            continue
        rendered = {request.legacy.transcription, request.legacy.translation} if request.legacy else {request.response_format}
        if not rendered & {"srt", "vtt"}:
            raise RequestError("lays out subtitle cues; it needs response_format srt or vtt", field=name)
        if not request.word_timestamps:
            raise RequestError("splits cues at word boundaries; it needs word_timestamps=true", field=name)
    if request.max_line_count is not None and request.max_line_width is None and request.max_words_per_line is None:
        raise RequestError("needs max_line_width or max_words_per_line to know where a line ends", field="max_line_count")
    if request.beam_size * request.patience < 1:
        raise RequestError(f"beam_size x patience must be at least 1 (got {request.beam_size} x {request.patience:g})", field="patience")
    _check_work(request)
    if request.hallucination_silence_threshold is not None and not request.word_timestamps:
        raise RequestError("needs word_timestamps=true", field="hallucination_silence_threshold")
    if request.vad_parameters is not None and not request.vad_filter:
        raise RequestError("has no effect with vad_filter=false", field="vad_parameters")
    if request.legacy and request.response_format != "verbose_json" and "response_format" in explicit:
        raise RequestError("legacy requests choose their format with `transcription`", field="response_format")
    _check_speakers(request)


def _check_work(request: TranscriptionRequest) -> None:
    """Refuse a window that would cost more than MAX_DECODES_PER_WINDOW hypotheses when every
    fallback runs, naming the option that makes it so."""
    cost = request.decodes_per_window()
    if cost <= MAX_DECODES_PER_WINDOW:
        return
    temperatures = request.temperatures
    beam = max(1, math.ceil(request.beam_size * request.patience)) if 0.0 in temperatures else 0
    sampled = len(temperatures) - (1 if beam else 0)
    # best_of x 20 temperatures alone stays within the bound at the default best_of
    if beam > MAX_DECODES_PER_WINDOW // 2:
        field = "beam_size" if "patience" not in request.model_fields_set else "patience"
    else:
        field = "best_of"
    parts = ([f"beam_size x patience = {beam} at temperature 0"] if beam else []) + \
        ([f"best_of = {request.best_of} at each of {sampled} higher temperatures"] if sampled else [])
    raise RequestError(f"a window would cost {cost} decodes when every fallback runs ({', '.join(parts)}); at most "
                       f"{MAX_DECODES_PER_WINDOW}: use fewer temperatures, a smaller best_of or beam_size", field=field)


def _check_speakers(request: TranscriptionRequest) -> None:
    for name in SPEAKER_OPTIONS:
        if getattr(request, name) is not None and not request.diarize:
            raise RequestError("needs diarize=true", field=name)
    if not request.wants_speakers:
        return
    asked = "diarize" if request.diarize else "multichannel"
    if request.diarize and request.multichannel:
        raise RequestError("labels speakers by channel; send diarize or multichannel, not both", field="multichannel")
    if request.legacy:
        raise RequestError("speaker labels need the current request names (response_format, not transcription)", field=asked)
    if request.without_timestamps:
        raise RequestError(f"speaker labels need timestamps; {asked} cannot be combined with without_timestamps", field="without_timestamps")
    if request.stream:
        raise RequestError(f"speakers are known only once the whole file is done; {asked} cannot stream", field="stream")
    if request.num_speakers is not None and (request.min_speakers is not None or request.max_speakers is not None):
        raise RequestError("give num_speakers or min_speakers / max_speakers, not both", field="num_speakers")
    if request.min_speakers is not None and request.max_speakers is not None and request.min_speakers > request.max_speakers:
        raise RequestError(f"is more than max_speakers ({request.min_speakers} > {request.max_speakers})", field="min_speakers")
    names = set()
    for index, known in enumerate(request.known_speakers or []):
        where = f"known_speakers[{index}]"
        given = [name for name in ("audio", "audio_base64") if getattr(known, name) is not None]
        if len(given) != 1:
            raise RequestError("give audio (a URL) or audio_base64 for the reference clip, one of them", field=f"{where}.audio")
        if known.name in names:
            raise RequestError(f"{known.name!r} is named twice", field=f"{where}.name")
        # a name must never read as a generated label (SPEAKER_00, CHANNEL_1) in any format, in
        # any case or spacing: "speaker 00", "Channel-1 " would merge with them on a subtitle line
        if re.fullmatch(r"(speaker|channel)[ _.'-]*\d+", known.name.strip().casefold()):
            raise RequestError("looks like an anonymous label; choose another name", field=f"{where}.name")
        if known.name != known.name.strip():
            raise RequestError("may not end with a space", field=f"{where}.name")
        names.add(known.name)


def _as_request_error(exc: ValidationError, renamed: dict) -> RequestError:
    error = exc.errors()[0]
    field = ""
    for part in error["loc"]:
        if isinstance(part, int):
            field += f"[{part}]"  # a list item: known_speakers[1].name
        elif part not in ("float", "int", "list[float]", "str", "bool"):
            # (pydantic appends the union member's type name, e.g. temperature.float: dropped)
            field += ("." if field else "") + renamed.get(part, part)
    field = field or "input"
    if error["type"] == "extra_forbidden":
        return RequestError("unknown field", field=field)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch":
        message = "may hold only letters, digits, spaces and . ' - (it is written into subtitles)"
    if error["type"].endswith("_type") or error["type"] == "literal_error":
        message = f"{message} (got {_json_type(error.get('input'))})"
    return RequestError(message, field=field)


def _finite_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int too large for a float
        return False


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}.get(type(value), type(value).__name__)
