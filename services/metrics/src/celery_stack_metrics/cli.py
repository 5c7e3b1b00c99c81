"""What every command does before its work: --help, --version, settings, logging."""

from __future__ import annotations

import logging
from collections.abc import Callable

from . import __version__, logs
from .envopts import ConfigError


def start(argv: list[str], usage: str, load: Callable, log: logging.Logger):
    """Return the loaded settings with logging set up, or exit: 0 after --help or --version,
    2 on a configuration error (logged, naming the variable)."""
    if argv and argv[0] in ("-h", "--help"):
        print(usage)
        raise SystemExit(0)
    if argv and argv[0] == "--version":
        print(__version__)
        raise SystemExit(0)
    try:
        settings = load()
    except ConfigError as exc:
        logs.setup("INFO")
        log.critical(f"configuration error: {exc}")
        raise SystemExit(2) from None
    logs.setup(settings.log_level)
    return settings
