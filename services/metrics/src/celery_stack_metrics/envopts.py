"""The one reader of settings from the environment, for every command of this package.

Each option is declared once, as an `Option`: its variable, default, help text, type and bounds.
The default is written as an operator would write the variable and goes through the same parser
and bounds (a default they refuse fails on the first read, not silently). `Option.read(env)` returns the
parsed value of the variable (of the default when it is unset or empty), or raises ConfigError
naming the variable, the value it got and what it expects. The commands print the declarations
under --help (`describe`), so the help cannot drift from the code.

Options that a pool may override (`per_pool`) are also read as <PREFIX>_<POOL>_<REST>, e.g.
AUTOSCALE_HIGH_MAX_REPLICAS before AUTOSCALE_MAX_REPLICAS.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# The names logging.setLevel accepts (DEBUG, INFO, WARNING, ... and the aliases WARN, FATAL).
LOG_LEVELS = tuple(logging.getLevelNamesMapping())


class ConfigError(Exception):
    """The process must not start half-configured."""


# ---- value types: a parser takes the stripped text and raises ValueError ---------------------------
# The message of the ValueError says what was expected; Option.read adds the variable and value.
# A parser whose option may be off (default "") accepts the empty text.


def integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("an integer") from None


def number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("a number") from None
    if not math.isfinite(value):
        raise ValueError("a finite number")
    return value


def http_url(raw: str) -> str:
    """An http(s) URL, or "" for none."""
    if raw and urllib.parse.urlsplit(raw).scheme not in ("http", "https"):
        raise ValueError("an http(s) URL")
    return raw


def postgres_url(raw: str) -> str:
    """A postgres:// or postgresql:// URL, or "" for none."""
    if raw and urllib.parse.urlsplit(raw).scheme not in ("postgres", "postgresql"):
        raise ValueError("a postgres:// URL")
    return raw


def name_list(raw: str) -> tuple[str, ...]:
    """Comma-separated names; empty items are dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def json_object(raw: str) -> dict:
    """A JSON object; "" is the empty one."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("a JSON object")
    return value


_KIND = {integer: "integer", number: "number"}


@dataclass(frozen=True)
class Option:
    name: str
    default: str  # as the variable would be written; "" = none (the parser says what that means)
    help: str
    parse: Callable[[str], object] = str
    minimum: float | None = None
    above: bool = False  # the value must be greater than `minimum`, not equal to it
    maximum: float | None = None
    choices: Sequence[str] = ()  # matched case-insensitively; the value is upper-cased
    per_pool: bool = False  # <PREFIX>_<POOL>_<REST> overrides the variable for that pool
    pool_only: bool = False  # only the per-pool variable exists; "<pool>" in the default is the pool
    required: bool = False

    def pool_variable(self, pool: str) -> str:
        """AUTOSCALE_MAX_REPLICAS, pool high (or hi-gh) -> AUTOSCALE_HIGH_MAX_REPLICAS (AUTOSCALE_HI_GH_...)."""
        prefix, _, rest = self.name.partition("_")
        return f"{prefix}_{pool.upper().replace('-', '_')}_{rest}"

    def read(self, env: Mapping[str, str], pool: str | None = None):
        """The value for `pool` (per-pool options), or the only value."""
        variable, raw, default = self.name, "", self.default
        if not self.pool_only:
            raw = env.get(self.name, "").strip()
        if pool is not None and self.per_pool:
            override = self.pool_variable(pool)
            default = default.replace("<pool>", pool)
            if env.get(override, "").strip():
                variable, raw = override, env[override].strip()
        if not raw:
            if self.required:
                raise ConfigError(f"{self.name} is not set: {self.help}")
            variable, raw = f"{variable} (default)", default
        try:
            value = self.parse(raw)
            if self.choices:
                value = value.upper()
                if value not in self.choices:
                    raise ValueError(f"one of {', '.join(self.choices)}")
            if not self._in_range(value):
                raise ValueError(self.expects())
        except ValueError as exc:
            expected = self.expects() if self.parse in _KIND else exc  # the bounds too, for numbers
            raise ConfigError(f"{variable} must be {expected}, got {raw!r}. {self.help}") from None
        return value

    def _in_range(self, value) -> bool:
        if self.minimum is not None and (value <= self.minimum if self.above else value < self.minimum):
            return False
        return self.maximum is None or value <= self.maximum

    def expects(self) -> str:
        """What a valid value looks like, e.g. `an integer from 1 to 65535`."""
        kind = _KIND.get(self.parse)
        if kind is None:
            return ", ".join(self.choices) if self.choices else "text"
        article = "an" if kind == "integer" else "a"
        low, high = self.minimum, self.maximum
        if low is not None and high is not None and not self.above:
            return f"{article} {kind} from {_num(low)} to {_num(high)}"
        bounds = []
        if low is not None:
            bounds.append(f"> {_num(low)}" if self.above else f">= {_num(low)}")
        if high is not None:
            bounds.append(f"<= {_num(high)}")
        return " ".join([article, kind, *bounds]) if bounds else f"{article} {kind}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def describe(options: Sequence[Option]) -> str:
    """The options as a plain-text table for --help: variable, default, what it is."""
    lines = ["Environment (empty = the default):"]
    for opt in options:
        default = "(required)" if opt.required else opt.default or "(none)"
        if opt.parse in _KIND or opt.choices:
            default += f"; {opt.expects()}"
        name = opt.name if not opt.per_pool else f"{opt.name} (per pool: {opt.pool_variable('<POOL>')})"
        if opt.pool_only:
            name = opt.pool_variable("<POOL>")
        lines.append(f"  {name}\n      {opt.help} Default: {default}.")
    return "\n".join(lines)
