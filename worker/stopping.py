"""AnyEvent: one flag for a loop to check that is set when any of several events is."""

from __future__ import annotations

import threading
from typing import Optional


class AnyEvent:
    """Set when any of its events is set: a background loop stops for its own reason (the job
    ended or failed) or for the caller's (a cancelled job), and checks one thing."""

    def __init__(self, *events: Optional[threading.Event]):
        self.events = [event for event in events if event is not None]

    def is_set(self) -> bool:
        return any(event.is_set() for event in self.events)
