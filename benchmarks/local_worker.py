"""The real worker as a child process serving the RunPod SDK's local HTTP API on loopback
(`python -m worker --rp_serve_api`): what the load generator and the HTTP tests run against."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import requests

ROOT = Path(__file__).resolve().parent.parent


class LocalWorker:
    """The real worker as a child process serving the SDK's local HTTP API on loopback."""

    def __init__(self, model_dir: str, concurrency: int, env_extra: Optional[Dict[str, str]] = None, start_limit: float = 300.0):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.temp_dir = tempfile.mkdtemp(prefix="whisper-load-")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WHISPER_", "RUNPOD_"))}
        env.update(WHISPER_MODEL=model_dir, WHISPER_CONCURRENCY=str(concurrency), WHISPER_TEMP_DIR=self.temp_dir,
                   WHISPER_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **(env_extra or {}))
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(self.port), "--rp_log_level", "ERROR"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_ready(start_limit)

    def _wait_ready(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"worker exited with {self.proc.returncode} during start-up:\n{self.log.read()[-3000:]}")
            try:
                requests.get(f"{self.url}/docs", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.3)
        self.close()
        raise RuntimeError(f"worker did not start within {limit:g} s")

    def sample(self) -> dict:
        """Resident memory, open file descriptors and leftover temp files of the server process."""
        import psutil

        proc = psutil.Process(self.proc.pid)
        return {"rss_mb": proc.memory_info().rss / 2**20, "open_fds": proc.num_fds(), "temp_files": len(os.listdir(self.temp_dir))}

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        try:
            os.rmdir(self.temp_dir)
        except OSError:
            pass

    def __enter__(self) -> "LocalWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
