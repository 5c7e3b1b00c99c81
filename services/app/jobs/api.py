"""The JSON API: enqueue allow-listed tasks, read their state, start the report workflow,
sign up and ask for a password reset.

Callers authenticate first (jobs/security.py: a scoped bearer token, or the session with CSRF);
every request is bounded (JSON only, depth, numeric ranges, body size) and rate-limited. Every
bad request gets a 4xx with {"error": {"code", "message"}} naming the problem; an unreachable or
full broker gets 503 within about CELERY_BROKER_TIMEOUT seconds; anything unexpected reaches
handler500, which answers JSON under /api/ too.
"""

import inspect
import json
import logging
import math
import re
import typing
import uuid
from functools import wraps

import redis.exceptions
from celery.result import AsyncResult
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, IntegrityError, transaction
from django.http import JsonResponse
from django.urls import reverse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from kombu.exceptions import OperationalError

from config.deadline import database_deadline
from config.redis_full import is_redis_full
from config.sqs import MessageTooLarge

from . import outbox, tasks
from .security import ApiError, authenticate, client_ip, limit, would_exceed

logger = logging.getLogger(__name__)

# Tasks the API may enqueue, by short name. send_email is deliberately absent: an open API
# that mails arbitrary addresses is a spam relay. Mail goes out through signup/password reset.
ENQUEUEABLE = {
    task.name.rsplit(".", 1)[-1]: task
    for task in (
        tasks.add,
        tasks.mul,
        tasks.xsum,
        tasks.count_widgets,
        tasks.rename_widget,
        tasks.long_job,
        tasks.notify_partner,
    )
}
BROKER_ERRORS = (OperationalError, OSError, TimeoutError)
# Deeper JSON than this is refused before it is parsed (json.loads recurses: RecursionError).
MAX_JSON_DEPTH = 32
# Every number the API passes to a task stays within what a float holds exactly.
MAX_NUMBER = 2**53
MAX_STRING = 1000
MAX_ITEMS = 10_000  # any list argument


def error(code: str, message: str, status: int, headers=None) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def json_api(view):
    """Turns ApiError, oversized bodies, broker, Redis and database outages into JSON errors.
    (Anything else is a bug: Django logs it and handler500 answers JSON.)"""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            with database_deadline(settings.API_DATABASE_DEADLINE):
                return view(request, *args, **kwargs)
        except ApiError as exc:
            return error(exc.code, exc.message, exc.status, exc.headers)
        except RequestDataTooBig:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return error("body_too_large", f"Request body exceeds {limit} bytes.", 413)
        except MessageTooLarge as exc:  # SQS's 256 KiB, refused before publishing
            return error("message_too_large", str(exc), 413)
        except redis.exceptions.RedisError as exc:
            # The broker or the rate-limit store: full (maxmemory, noeviction) or unreachable.
            logger.error("redis refused the request: %s", exc)
            if is_redis_full(exc):
                return error("redis_full", "Redis is full and refuses writes; retry later.", 503)
            return error("redis_unavailable", "Redis is unreachable; retry later.", 503)
        except BROKER_ERRORS as exc:
            if is_redis_full(exc):
                logger.error("broker refuses writes: %s", exc)
                return error("redis_full", "Redis is full and refuses writes; retry later.", 503)
            logger.error("broker unreachable: %s", exc)
            return error("broker_unavailable", "The task broker is unreachable; retry later.", 503)
        except DatabaseError as exc:
            logger.error("database unavailable: %s", exc)
            return error("database_unavailable", "The database is unreachable; retry later.", 503)

    return csrf_exempt(wrapper)  # CSRF is enforced for session callers in security.authenticate


def json_depth(raw: bytes) -> int:
    """Nesting depth of a JSON text, without recursion and in one linear pass: only quotes,
    escapes and brackets are visited, brackets inside strings do not count. (A regex that
    strips strings first backtracks quadratically on `"\\"\\"…`: 13 s for 64 KiB.)"""
    depth = deepest = 0
    in_string = False
    for match in _JSON_SYNTAX.finditer(raw):
        token = match.group()
        if token[:1] == b"\\":
            continue  # an escape pair: never a quote or a bracket
        if token == b'"':
            in_string = not in_string
        elif not in_string:
            depth += 1 if token in (b"[", b"{") else -1
            deepest = max(deepest, depth)
    return deepest


_JSON_SYNTAX = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)


def _refuse_constant(name: str):
    raise ApiError("invalid_json", f"{name} is not a number JSON allows.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ApiError("invalid_json", f"{text} is out of range.")
    return value


def read_json(request) -> dict:
    """The POST body as a JSON object. Only application/json is accepted, even for an empty
    body: browsers send text/plain and form bodies cross-site without asking first."""
    if (request.content_type or "") != "application/json":
        raise ApiError(
            "unsupported_media_type", "Send the body as Content-Type: application/json.", 415
        )
    raw = request.body  # RequestDataTooBig (413) above DATA_UPLOAD_MAX_MEMORY_SIZE
    if not raw.strip():
        return {}
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise ApiError("invalid_json", f"The body is nested deeper than {MAX_JSON_DEPTH} levels.")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError("invalid_json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise ApiError("invalid_json", "The body must be a JSON object.")
    return body


def conforms(value, annotation) -> bool:
    """Does a decoded JSON value fit a task parameter's annotation?"""
    if annotation is inspect.Parameter.empty or annotation is typing.Any:
        return True
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_NUMBER
    if annotation is float:
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and abs(value) <= MAX_NUMBER
        )
    if annotation is str:
        return isinstance(value, str) and len(value) <= MAX_STRING
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (typing.Any,)
        return (
            isinstance(value, list)
            and len(value) <= MAX_ITEMS
            and all(conforms(v, item) for v in value)
        )
    if annotation in (list, dict):
        return isinstance(value, annotation)
    return False


def type_name(annotation) -> str:
    return (
        getattr(annotation, "__name__", None)
        if not typing.get_args(annotation)
        else str(annotation)
    )


def bind_arguments(task, args, kwargs) -> None:
    """Check args/kwargs against the task's signature before anything reaches the broker."""
    signature = inspect.signature(task.run)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ApiError("invalid_arguments", f"{task.name}{signature}: {exc}.") from None
    hints = typing.get_type_hints(task.run)
    for name, value in bound.arguments.items():
        annotation = hints.get(name, inspect.Parameter.empty)
        if not conforms(value, annotation):
            raise ApiError(
                "invalid_arguments",
                f"Argument {name!r} of {task.name} must be {type_name(annotation)}, "
                f"got {type(value).__name__} (or out of range).",
            )
    short = task.name.rsplit(".", 1)[-1]
    for argument, (low, high) in argument_ranges().get(short, {}).items():
        value = bound.arguments.get(argument)
        if value is not None and not low <= value <= high:
            raise ApiError(
                "invalid_arguments",
                f"Argument {argument!r} of {short} must be between {low} and {high}.",
            )


def argument_ranges() -> dict:
    """Per task, the range of each numeric argument: the work one request may cause."""
    return {
        # Never longer than the default pool's soft limit, so it cannot hold a slot past it.
        "long_job": {"seconds": (0, settings.API_LONG_JOB_MAX_SECONDS), "steps": (1, 1000)},
        "rename_widget": {"widget_id": (1, MAX_NUMBER)},
        "notify_partner": {"widget_id": (1, MAX_NUMBER)},
    }


def seconds_option(body: dict, key: str, maximum: int) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ApiError(f"invalid_{key}", f"{key} must be a number of seconds.")
    if value < 0:
        raise ApiError(f"invalid_{key}", f"{key} must not be negative.")
    if value > maximum:
        raise ApiError(f"invalid_{key}", f"{key} must be at most {maximum} seconds.")
    return value


def accepted(result: AsyncResult) -> JsonResponse:
    status_url = reverse("task-status", args=[result.id])
    return JsonResponse({"id": result.id, "status_url": status_url}, status=202)


def limit_client(request, group: str, rate: str) -> None:
    limit(request, f"{group}-ip", rate, client_ip(request))


@json_api
def tasks_endpoint(request, key: str):
    if request.method == "POST":
        return enqueue_task(request, key)
    if request.method == "GET":
        return task_status(request, key)
    raise ApiError("method_not_allowed", "Use POST to enqueue, GET to read a task.", 405)


def enqueue_task(request, name: str):
    # Per address first: it also bounds guessing at tokens.
    limit_client(request, "enqueue", settings.RATELIMIT_ENQUEUE_PER_IP)
    caller = authenticate(request)
    limit(request, "enqueue", settings.RATELIMIT_ENQUEUE, caller.ident)
    task = ENQUEUEABLE.get(name)
    if task is None:
        known = ", ".join(sorted(ENQUEUEABLE))
        raise ApiError("unknown_task", f"Unknown task {name!r}. Known tasks: {known}.", 404)
    caller.require_task(name)
    body = read_json(request)
    unknown = set(body) - {"args", "kwargs", "countdown", "expires"}
    if unknown:
        raise ApiError("invalid_field", f"Unknown field(s): {', '.join(sorted(unknown))}.")
    args, kwargs = body.get("args", []), body.get("kwargs", {})
    if not isinstance(args, list):
        raise ApiError("invalid_arguments", "args must be a JSON array.")
    if not isinstance(kwargs, dict):
        raise ApiError("invalid_arguments", "kwargs must be a JSON object.")
    bind_arguments(task, args, kwargs)
    countdown = seconds_option(body, "countdown", settings.API_MAX_COUNTDOWN)
    expires = seconds_option(body, "expires", settings.CELERY_BROKER_VISIBILITY_TIMEOUT)
    result = task.apply_async(args=args, kwargs=kwargs, countdown=countdown, expires=expires)
    return accepted(result)


def task_status(request, task_id: str):
    authenticate(request)  # results may hold anything a task returned
    try:
        uuid.UUID(task_id)
    except ValueError:
        raise ApiError("invalid_task_id", f"{task_id!r} is not a task id (UUID).") from None
    # One backend read; django-celery-results calls the task name `task_name`.
    backend = AsyncResult(task_id).backend
    meta = backend.get_task_meta(task_id)
    state = meta["status"]
    payload = {"id": task_id, "state": state, "name": meta.get("task_name") or meta.get("name")}
    if state == "SUCCESS":
        payload["result"] = meta["result"]
    elif state == "PROGRESS":
        payload["progress"] = meta["result"]
    elif state in ("FAILURE", "REVOKED", "RETRY"):
        exc = backend.exception_to_python(meta["result"])
        payload["error"] = {"type": type(exc).__name__, "message": str(exc)}
    if meta.get("date_done"):
        payload["date_done"] = str(meta["date_done"])
    return JsonResponse(payload)


# The report: at most this many chunks of at most this many numbers (about 10,000 sums).
REPORT_MAX_CHUNKS = 100
REPORT_MAX_CHUNK_SIZE = 100


@json_api
@require_POST
def start_report(request):
    limit_client(request, "enqueue", settings.RATELIMIT_ENQUEUE_PER_IP)
    caller = authenticate(request)
    limit(request, "enqueue", settings.RATELIMIT_ENQUEUE, caller.ident)
    caller.require_report()
    body = read_json(request)
    unknown = set(body) - {"title", "chunks"}
    if unknown:
        raise ApiError("invalid_field", f"Unknown field(s): {', '.join(sorted(unknown))}.")
    title = body.get("title", "Widget report")
    chunks = body.get("chunks", [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        raise ApiError("invalid_arguments", "title must be a non-empty string of 200 at most.")
    if (
        not isinstance(chunks, list)
        or not 1 <= len(chunks) <= REPORT_MAX_CHUNKS
        or not all(
            conforms(chunk, list[float]) and len(chunk) <= REPORT_MAX_CHUNK_SIZE for chunk in chunks
        )
    ):
        raise ApiError(
            "invalid_arguments",
            f"chunks must be 1 to {REPORT_MAX_CHUNKS} arrays of at most "
            f"{REPORT_MAX_CHUNK_SIZE} numbers.",
        )
    return accepted(tasks.report_workflow(title, chunks).apply_async())


def mail_allowed(request, address: str) -> bool:
    """Mail per target address is limited; over the limit the mail is skipped silently (the
    answer must not change, or it would tell whether the address has an account)."""
    if would_exceed(request, "mail-to", settings.RATELIMIT_MAIL_PER_ADDRESS, address.lower()):
        logger.warning("mail to %s skipped: over RATELIMIT_MAIL_PER_ADDRESS", address)
        return False
    return True


def valid_email(value) -> str:
    if not isinstance(value, str) or not value or len(value) > 254:
        raise ApiError("invalid_arguments", "email must be an e-mail address.")
    try:
        validate_email(value)
    except ValidationError:
        raise ApiError("invalid_arguments", "email must be an e-mail address.") from None
    return value


SIGNUP_ACCEPTED = {
    "status": "accepted",
    "detail": "If the username is available, the account is created; a mail follows either way.",
}


@json_api
@require_POST
def signup(request):
    """Create a user and mail them. The answer is the same whether or not the username is
    taken and whether or not the broker is up: the mail goes through the outbox."""
    limit_client(request, "signup", settings.RATELIMIT_SIGNUP_PER_IP)
    body = read_json(request)
    fields = {key: body.get(key) for key in ("username", "email", "password")}
    missing = [key for key, value in fields.items() if not isinstance(value, str) or not value]
    if missing:
        raise ApiError("invalid_arguments", f"Missing or empty: {', '.join(missing)}.")
    username, email, password = fields["username"], fields["email"], fields["password"]
    # Validate with the model's own rules before the database sees anything.
    username_field = User._meta.get_field("username")
    if len(username) > username_field.max_length:
        longest = username_field.max_length
        raise ApiError("invalid_arguments", f"username must be {longest} characters or fewer.")
    try:
        username_field.run_validators(username)
    except ValidationError as exc:
        raise ApiError("invalid_arguments", f"username: {' '.join(exc.messages)}") from None
    valid_email(email)
    if len(password) > 4096:
        raise ApiError("invalid_arguments", "password must be 4096 characters or fewer.")
    try:
        validate_password(password, User(username=username, email=email))
    except ValidationError as exc:
        raise ApiError("invalid_arguments", f"password: {' '.join(exc.messages)}") from None
    # Hash before looking the name up, so a taken name does not answer faster.
    hashed = make_password(password)
    send = mail_allowed(request, email)
    try:
        with transaction.atomic():
            user = User(username=username, email=email, password=hashed)
            user.save()
            if send:
                welcome = f"Hello {username}, welcome aboard."
                outbox.send(tasks.send_email, (email, "Welcome to celery-stack", welcome))
    except IntegrityError:  # the username is taken: tell the mailbox owner, not the caller
        if send:
            with transaction.atomic():
                taken = (
                    f"The username {username!r} is taken; sign up with another one. If it is "
                    "yours, use password reset."
                )
                outbox.send(tasks.send_email, (email, "Your celery-stack signup", taken))
    # 201 whether or not the username was free: the same answer, so it tells nobody which exist.
    return JsonResponse(SIGNUP_ACCEPTED, status=201)


PASSWORD_RESET_ACCEPTED = {"status": "sent if the address is registered"}


@json_api
@require_POST
def password_reset(request):
    """Mail a reset notice. It expires: a reset mail that arrives an hour late is useless.
    Same answer whether or not the address exists and whether or not the broker is up."""
    limit_client(request, "password-reset", settings.RATELIMIT_RESET_PER_IP)
    body = read_json(request)
    email = valid_email(body.get("email"))
    # Counted for every address, known or not, so the limit's cost reveals nothing either.
    if mail_allowed(request, email) and User.objects.filter(email__iexact=email).exists():
        with transaction.atomic():
            outbox.send(
                tasks.send_email,
                (email, "Password reset", "Someone asked to reset your password."),
                expires=settings.PASSWORD_RESET_EMAIL_EXPIRES,
            )
    return JsonResponse(PASSWORD_RESET_ACCEPTED, status=202)


def not_found(request, exception=None):
    """handler404: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return error("not_found", f"No endpoint at {request.path}.", 404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """handler500: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return error("internal_error", "Internal error; it has been logged.", 500)
    return defaults.server_error(request)
