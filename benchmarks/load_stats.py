"""What a load run's answers add up to: throughput, latency percentiles, the server's own
timings, clean refusals, and the transcripts to compare between runs."""

from __future__ import annotations

import statistics
from typing import Dict, List, Optional


def summarise(jobs: List[dict], results: List[Optional[dict]], wall: float, concurrency: int, samples: List[dict]) -> dict:
    done = [(job, res) for job, res in zip(jobs, results) if res is not None]
    valid = [(job, res) for job, res in done if job["valid"]]
    invalid = [(job, res) for job, res in done if not job["valid"]]
    ok = [(job, res) for job, res in valid if not res["error"]]
    latencies = sorted(res["latency"] for _, res in ok)
    audio = sum(job["audio_seconds"] for job, _ in ok)

    def pct(p: float) -> Optional[float]:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(round(p / 100 * (len(latencies) - 1))))]

    def server_metric(name: str) -> Optional[float]:
        values = [res["output"]["metrics"][name] for _, res in ok if isinstance(res["output"], dict) and "metrics" in res["output"]]
        return statistics.median(values) if values else None

    return {
        "concurrency": concurrency,
        "jobs_sent": len(done),
        "valid_jobs": len(valid),
        "valid_failed": len(valid) - len(ok),
        "invalid_jobs": len(invalid),
        "invalid_refused_cleanly": sum(1 for _, res in invalid if res["error"] and not str(res["error"]).startswith(("HTTP", "transport"))),
        "failures": sorted({str(res["error"])[:120] for _, res in valid if res["error"]}),
        "wall_seconds": wall,
        "jobs_per_second": len(ok) / wall if wall else None,
        "audio_seconds_per_second": audio / wall if wall else None,
        "latency_p50": pct(50), "latency_p95": pct(95), "latency_p99": pct(99),
        "server_queue_p50": server_metric("queue_seconds"),
        "server_inference_p50": server_metric("inference_seconds"),
        "transcripts": [_text(job, res) for job, res in zip(jobs, results)],
        "samples": samples,
    }


def _text(job: dict, res: Optional[dict]) -> Optional[str]:
    if not job["valid"] or res is None or res["error"] or not isinstance(res["output"], dict):
        return None
    return res["output"].get("text")


def equal_transcripts(a: dict, b: dict) -> Optional[bool]:
    pairs = [(x, y) for x, y in zip(a["transcripts"], b["transcripts"]) if x is not None and y is not None]
    return all(x == y for x, y in pairs) if pairs else None


def differing_from(reference: Dict[str, Optional[str]], jobs: List[dict], run: dict) -> int:
    """Valid transcripts unlike the same file's served alone (load_jobs.reference_texts)."""
    return sum(1 for job, text in zip(jobs, run["transcripts"]) if text is not None and text != reference.get(job["file"]))


def comparison(serial: dict, concurrent: dict) -> dict:
    return {
        "throughput_ratio": (concurrent["audio_seconds_per_second"] / serial["audio_seconds_per_second"])
        if serial["audio_seconds_per_second"] else None,
        "transcripts_equal": equal_transcripts(serial, concurrent),
    }
