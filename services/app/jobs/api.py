"""The JSON API: enqueue allow-listed tasks, read their state, start the report workflow.

Every bad request gets a 4xx with {"error": {"code", "message"}} naming the problem; an
unreachable broker gets 503 within about CELERY_BROKER_TIMEOUT seconds.
"""

import inspect
import json
import logging
import typing
import uuid
from functools import wraps

from celery.result import AsyncResult
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, IntegrityError, transaction
from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from kombu.exceptions import OperationalError

from . import tasks

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


class BadRequest(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def json_api(view):
    """Turns BadRequest, oversized bodies and broker outages into JSON errors."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except BadRequest as exc:
            return error(exc.code, exc.message, exc.status)
        except RequestDataTooBig:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return error("body_too_large", f"Request body exceeds {limit} bytes.", 413)
        except BROKER_ERRORS as exc:
            logger.error("broker unreachable: %s", exc)
            return error("broker_unavailable", "The task broker is unreachable; retry later.", 503)
        except DatabaseError as exc:
            if isinstance(exc, IntegrityError):
                raise
            logger.error("database unavailable: %s", exc)
            return error("database_unavailable", "The database is unreachable; retry later.", 503)

    return csrf_exempt(wrapper)


def read_json(request) -> dict:
    content_type = request.content_type or ""
    if request.body and content_type != "application/json":
        raise BadRequest(
            "unsupported_media_type", "Send the body as Content-Type: application/json.", 415
        )
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("invalid_json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise BadRequest("invalid_json", "The body must be a JSON object.")
    return body


def conforms(value, annotation) -> bool:
    """Does a decoded JSON value fit a task parameter's annotation?"""
    if annotation is inspect.Parameter.empty or annotation is typing.Any:
        return True
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (typing.Any,)
        return isinstance(value, list) and all(conforms(v, item) for v in value)
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
        raise BadRequest("invalid_arguments", f"{task.name}{signature}: {exc}.") from None
    hints = typing.get_type_hints(task.run)
    for name, value in bound.arguments.items():
        annotation = hints.get(name, inspect.Parameter.empty)
        if not conforms(value, annotation):
            raise BadRequest(
                "invalid_arguments",
                f"Argument {name!r} of {task.name} must be {type_name(annotation)}, "
                f"got {type(value).__name__}.",
            )


def seconds_option(body: dict, key: str, maximum: int) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise BadRequest(f"invalid_{key}", f"{key} must be a number of seconds.")
    if value < 0:
        raise BadRequest(f"invalid_{key}", f"{key} must not be negative.")
    if value > maximum:
        raise BadRequest(f"invalid_{key}", f"{key} must be at most {maximum} seconds.")
    return value


def accepted(result: AsyncResult) -> JsonResponse:
    status_url = reverse("task-status", args=[result.id])
    return JsonResponse({"id": result.id, "status_url": status_url}, status=202)


@json_api
def tasks_endpoint(request, key: str):
    if request.method == "POST":
        return enqueue_task(request, key)
    if request.method == "GET":
        return task_status(request, key)
    raise BadRequest("method_not_allowed", "Use POST to enqueue, GET to read a task.", 405)


def enqueue_task(request, name: str):
    task = ENQUEUEABLE.get(name)
    if task is None:
        known = ", ".join(sorted(ENQUEUEABLE))
        raise BadRequest("unknown_task", f"Unknown task {name!r}. Known tasks: {known}.", 404)
    body = read_json(request)
    unknown = set(body) - {"args", "kwargs", "countdown", "expires"}
    if unknown:
        raise BadRequest("invalid_field", f"Unknown field(s): {', '.join(sorted(unknown))}.")
    args, kwargs = body.get("args", []), body.get("kwargs", {})
    if not isinstance(args, list):
        raise BadRequest("invalid_arguments", "args must be a JSON array.")
    if not isinstance(kwargs, dict):
        raise BadRequest("invalid_arguments", "kwargs must be a JSON object.")
    bind_arguments(task, args, kwargs)
    countdown = seconds_option(body, "countdown", settings.API_MAX_COUNTDOWN)
    expires = seconds_option(body, "expires", settings.CELERY_BROKER_VISIBILITY_TIMEOUT)
    result = task.apply_async(args=args, kwargs=kwargs, countdown=countdown, expires=expires)
    return accepted(result)


def task_status(request, task_id: str):
    try:
        uuid.UUID(task_id)
    except ValueError:
        raise BadRequest("invalid_task_id", f"{task_id!r} is not a task id (UUID).") from None
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


@json_api
@require_POST
def start_report(request):
    body = read_json(request)
    title = body.get("title", "Widget report")
    chunks = body.get("chunks", [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    if not isinstance(title, str) or not title.strip():
        raise BadRequest("invalid_arguments", "title must be a non-empty string.")
    if (
        not isinstance(chunks, list)
        or not 1 <= len(chunks) <= 100
        or not all(conforms(chunk, list[float]) for chunk in chunks)
    ):
        raise BadRequest("invalid_arguments", "chunks must be 1 to 100 arrays of numbers.")
    return accepted(tasks.report_workflow(title, chunks).apply_async())


@json_api
@require_POST
def signup(request):
    """Create a user; the welcome mail is sent only once the user row is committed."""
    body = read_json(request)
    fields = {key: body.get(key) for key in ("username", "email", "password")}
    missing = [key for key, value in fields.items() if not isinstance(value, str) or not value]
    if missing:
        raise BadRequest("invalid_arguments", f"Missing or empty: {', '.join(missing)}.")
    try:
        with transaction.atomic():
            user = User.objects.create_user(**fields)
            tasks.send_email.delay_on_commit(
                user.email, "Welcome to celery-stack", f"Hello {user.username}, welcome aboard."
            )
    except IntegrityError:
        raise BadRequest("conflict", f"User {fields['username']!r} already exists.", 409) from None
    return JsonResponse({"id": user.pk, "username": user.username}, status=201)


@json_api
@require_POST
def password_reset(request):
    """Mail a reset notice. It expires: a reset mail that arrives an hour late is useless."""
    body = read_json(request)
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise BadRequest("invalid_arguments", "email must be an e-mail address.")
    # Same answer whether or not the address exists, so the API does not leak accounts.
    if User.objects.filter(email=email).exists():
        tasks.send_email.apply_async(
            (email, "Password reset", "Someone asked to reset your password."),
            expires=settings.PASSWORD_RESET_EMAIL_EXPIRES,
        )
    return JsonResponse({"status": "sent if the address is registered"}, status=202)
