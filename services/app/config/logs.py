"""The one JSON log format, shared by Django/Celery (settings.LOGGING) and gunicorn."""


def json_logging(root_level: str, loggers: dict | None = None) -> dict:
    """A dictConfig: one JSON object per line on stdout."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            },
        },
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"handlers": ["stdout"], "level": root_level},
        "loggers": loggers or {},
    }
