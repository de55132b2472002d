"""HTTP(S) image downloads for table rows: a timeout, bounded retries, a per-host concurrency
cap, a user agent, a size cap, and one status per way a download fails.

A failure is a ``FetchError`` whose ``status`` is the audit status: ``http_error`` (the
server answered 4xx/5xx; the reason holds the code), ``timeout`` and ``connection_error``
(refused, reset, DNS). 429 and 5xx answers, timeouts and connection errors are retried with
a short backoff; other 4xx answers are final at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from pairsift.models.records import Status

USER_AGENT = "pairsift/0.1 (image-caption dataset curation)"
RETRYABLE_CODES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class FetchPolicy:
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    retries: int = 2  # after the first try
    backoff_s: float = 0.5  # doubled after each retry
    per_host: int = 8  # concurrent requests to one host, per worker process


class FetchError(Exception):
    def __init__(self, status: Status, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.status, self.retry = status, retry


_HOST_SLOTS: dict[str, threading.BoundedSemaphore] = {}
_HOST_LOCK = threading.Lock()
_LOCAL = threading.local()  # one requests session per thread


def _slot(host: str, per_host: int) -> threading.BoundedSemaphore:
    with _HOST_LOCK:
        if host not in _HOST_SLOTS:
            _HOST_SLOTS[host] = threading.BoundedSemaphore(per_host)
        return _HOST_SLOTS[host]


def _session():  # noqa: ANN202 - a requests.Session, imported lazily
    """One session per thread (connection reuse; requests sessions are not thread-safe)."""
    import requests

    if getattr(_LOCAL, "session", None) is None:
        _LOCAL.session = requests.Session()
        _LOCAL.session.headers["User-Agent"] = USER_AGENT
    return _LOCAL.session


POLICY = FetchPolicy()  # the defaults every download uses


def fetch_url(url: str, cap: int, policy: FetchPolicy | None = None) -> bytes:
    """The body of ``url``, at most ``cap`` bytes, or a ``FetchError`` saying why not."""
    policy = policy or POLICY
    error: FetchError | None = None
    for attempt in range(policy.retries + 1):
        if attempt:
            time.sleep(policy.backoff_s * 2 ** (attempt - 1))
        with _slot(urlsplit(url).netloc, policy.per_host):
            try:
                return _get(url, cap, policy)
            except FetchError as exc:
                error = exc
                if not exc.retry:
                    raise
    assert error is not None
    raise error


def _get(url: str, cap: int, policy: FetchPolicy) -> bytes:
    import requests

    try:
        with _session().get(url, stream=True, allow_redirects=True,
                            timeout=(policy.connect_timeout_s, policy.read_timeout_s)) as response:
            if response.status_code >= 400:
                raise FetchError(Status.HTTP_ERROR, f"HTTP {response.status_code} {response.reason}",
                             response.status_code in RETRYABLE_CODES)
            body = bytearray()
            for chunk in response.iter_content(1 << 16):
                body += chunk
                if len(body) > cap:
                    raise FetchError(Status.READ_ERROR, f"over the {cap}-byte cap (limits.max_image_bytes)")
            return bytes(body)
    except requests.Timeout as exc:
        raise FetchError(Status.TIMEOUT, f"timed out: {type(exc).__name__}", True) from exc
    except requests.ConnectionError as exc:
        raise FetchError(Status.CONNECTION_ERROR, f"connection failed: {_root_cause(exc)}", True) from exc
    except requests.RequestException as exc:
        raise FetchError(Status.READ_ERROR, f"{type(exc).__name__}: {exc}") from exc


def _root_cause(exc: BaseException) -> str:
    """The innermost reason ("Connection refused"), not urllib3's nested wrappers."""
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "Connection reset"):
        if marker in text:
            return marker
    return f"{type(exc).__name__}: {text}"[:300]
