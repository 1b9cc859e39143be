"""POST a JSON body with retries: back off on 429 and 5xx, honour Retry-After.

The URL may itself be a secret (a Slack webhook URL is a bearer credential), so nothing
here ever puts the URL into an exception, a log line or an answer.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    timeout_s: float = 10.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.max_delay_s)
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        return min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s)


DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True)
class HttpAnswer:
    status: int | None  # None when no HTTP answer came at all (connection refused, timeout)
    text: str  # the answer's body, or what went wrong; never the URL
    attempts: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return text


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    secrets: tuple[str, ...] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> HttpAnswer:
    """POST `body`; retry on 429, 5xx and network errors; never raise for an HTTP answer."""
    attempt = 0
    while True:
        attempt += 1
        retry_after = None
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", **headers})
        status: int | None
        try:
            with urllib.request.urlopen(request, timeout=policy.timeout_s) as response:
                status, text = response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            status, retry_after = exc.code, exc.headers.get("Retry-After")
            text = exc.read().decode("utf-8", "replace")
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            # str(URLError) names the reason (refused, timed out), not the URL.
            reason = getattr(exc, "reason", exc)
            status, text = None, f"no answer: {type(reason).__name__}: {reason}"
        done = status is not None and status not in RETRY_STATUSES
        if done or attempt >= policy.attempts:
            return HttpAnswer(status, redact(text, (url, *secrets))[:500], attempt)
        sleep(policy.delay(attempt, retry_after))
