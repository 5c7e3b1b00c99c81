"""Reading settings from the environment (12-factor), with errors that name the variable."""

import os


class MissingSetting(SystemExit):
    """Raised at import time: the process must not start half-configured."""


def required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise MissingSetting(
            f"Required environment variable {name} is not set. "
            f"See .env.example and docs/architecture.md."
        )
    return value


def string(name: str, default: str) -> str:
    return os.environ.get(name, default).strip() or default


def integer(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise MissingSetting(
            f"Environment variable {name} must be an integer, got {raw!r}."
        ) from None


def boolean(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise MissingSetting(f"Environment variable {name} must be true or false, got {raw!r}.")


def csv(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]
