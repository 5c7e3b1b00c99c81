"""Who may call the API, and how often.

- API clients send `Authorization: Bearer <token>` (jobs.models.ApiToken, stored hashed,
  scoped to task names and to the report workflow).
- The progress page uses the Django session: the user needs the permission
  `jobs.use_progress_page`, and every unsafe request passes Django's CSRF check.
- Rate limits (django-ratelimit) count in the `ratelimit` cache, a Redis shared by every
  gunicorn worker and replica. Going over gets 429 with Retry-After.
"""

import hmac
import ipaddress
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.middleware.csrf import CsrfViewMiddleware
from django_ratelimit.core import get_usage

from .models import ApiToken

logger = logging.getLogger(__name__)

# What a session user with `jobs.use_progress_page` may do: what the page's buttons start.
PAGE_TASKS = frozenset({"long_job"})


class ApiError(Exception):
    """Answered as {"error": {"code", "message"}} with this status and headers."""

    def __init__(self, code: str, message: str, status: int = 400, headers=None):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.headers = headers or {}


@dataclass
class Caller:
    """The authenticated caller: a token or a session user."""

    kind: str  # "token" or "session"
    ident: str  # rate-limit key: the token's hash prefix or the user id
    tasks: frozenset = field(default_factory=frozenset)
    may_start_report: bool = False

    def require_task(self, name: str) -> None:
        if name not in self.tasks:
            raise ApiError("forbidden", f"This {self.kind} may not enqueue {name!r}.", 403)

    def require_report(self) -> None:
        if not self.may_start_report:
            raise ApiError("forbidden", f"This {self.kind} may not start the report.", 403)


def unauthorized(message: str, error: str | None = None) -> ApiError:
    challenge = 'Bearer realm="celery-stack"'
    if error:
        challenge += f', error="{error}"'
    return ApiError("unauthorized", message, 401, {"WWW-Authenticate": challenge})


def _csrf_failure(request, reason: str = ""):
    raise ApiError("csrf_failed", f"CSRF check failed: {reason}", 403)


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request, reason):
        _csrf_failure(request, reason)


def authenticate(request) -> Caller:
    """The caller, or ApiError 401/403. Never falls back from a bad token to the session."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("Use Authorization: Bearer <token>.", "invalid_request")
        found = ApiToken.authenticate(token) if len(token) <= 200 else None
        # The lookup is by SHA-256, so its timing reveals nothing about the token; compare
        # anyway so a hash collision in the index can never match a different token.
        if found is None or not hmac.compare_digest(found.key_hash, ApiToken.digest(token)):
            raise unauthorized("The token is unknown or revoked.", "invalid_token")
        request.api_token = found
        return Caller("token", found.key_hash[:16], frozenset(found.tasks), found.may_start_report)
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise unauthorized("Authentication required: send Authorization: Bearer <token>.")
    if not user.has_perm("jobs.use_progress_page"):
        raise ApiError("forbidden", "This account may not use the API.", 403)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        check = _CsrfCheck(lambda _request: None)
        check.process_request(request)
        check.process_view(request, None, (), {})
    return Caller("session", f"user:{user.pk}", PAGE_TASKS, may_start_report=True)


def client_ip(request) -> str:
    """The client address for rate limits. X-Forwarded-For is trusted only when
    RATELIMIT_TRUSTED_PROXIES > 0: then the address that many hops from the right is used
    (each trusted proxy appends the address it saw). Otherwise anyone could pick their key."""
    hops = settings.RATELIMIT_TRUSTED_PROXIES
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < hops:
        return remote
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def limit(request, group: str, rate: str, value: str) -> None:
    """Count one request against `group` for `value`; ApiError 429 with Retry-After when over."""
    if not rate:
        return
    usage = get_usage(
        request, group=group, key=lambda _group, _request: value, rate=rate, increment=True
    )
    if usage and usage["should_limit"]:
        if usage["limit"] == 0 and usage["time_left"] == -1:  # the store did not answer
            raise ApiError(
                "rate_limit_unavailable", "The rate-limit store is unavailable; retry later.", 503
            )
        # django-ratelimit's window runs through the whole second `time_left` counts to.
        retry_after = max(1, usage["time_left"] + 1)
        raise ApiError(
            "rate_limited",
            f"Too many requests ({rate}); retry in {retry_after} s.",
            429,
            {"Retry-After": str(retry_after)},
        )


def would_exceed(request, group: str, rate: str, value: str) -> bool:
    """Count one event for `value` (e.g. a mail to one address): True when over the limit.
    Used where the answer must not change (no enumeration): the caller silently skips."""
    if not rate:
        return False
    usage = get_usage(
        request, group=group, key=lambda _group, _request: value, rate=rate, increment=True
    )
    return bool(usage and usage["should_limit"])
