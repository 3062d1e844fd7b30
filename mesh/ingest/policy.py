"""When to reconnect, by cause of the disconnect.

- A network error or abnormal close: at once, then capped exponential backoff with jitter.
- `auth_failed`: never on its own; retrying a bad key only gets the key throttled.
- `max_connections`: another client holds the key; wait a long cool-down before trying again,
  or two clients would kick each other off for ever.
- The attempt counter resets once a connection has been healthy for a while.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


class Cause:
    NETWORK = "network"
    ABNORMAL_CLOSE = "abnormal_close"
    QUIET = "quiet"  # no data and no pong within the timeout
    SERVER_CLOSE = "server_close"  # force_disconnect, slow_consumer
    AUTH_FAILED = "auth_failed"
    MAX_CONNECTIONS = "max_connections"


@dataclass
class ReconnectPolicy:
    base: float = 0.5
    cap: float = 30.0
    max_connections_cooldown: float = 60.0
    healthy_after: float = 30.0
    jitter: float = 0.25
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def delay(self, cause: str) -> float | None:
        """Seconds to wait before the next attempt, or None to stop retrying."""
        if cause == Cause.AUTH_FAILED:
            return None
        self.attempts += 1
        if cause == Cause.MAX_CONNECTIONS:
            return self.max_connections_cooldown * (1 + self.jitter * self.rng.random())
        if self.attempts == 1:
            return 0.0
        backoff = min(self.cap, self.base * 2 ** (self.attempts - 2))
        return backoff * (1 + self.jitter * (2 * self.rng.random() - 1))

    def connected_for(self, seconds: float) -> None:
        """Report how long the current connection has been healthy; resets the backoff when long enough."""
        if seconds >= self.healthy_after:
            self.attempts = 0
