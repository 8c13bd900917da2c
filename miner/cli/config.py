"""``--config FILE``, ``--write-config FILE`` and ``MINER_<OPTION>`` variables: a rig's run, kept in a file.

A rig runs unattended for months from a config file, and operators arrive with cgminer's or
cpuminer-opt's. So the file is JSON (or TOML) keyed by the long option names, which are cgminer's
where cgminer has one (``"pools": [{"url", "user", "pass"}]``, ``"api-listen"``, ``"api-allow"``,
``"threads"``). The file only supplies defaults: Click resolves an option from the command line
first, then from its ``MINER_<OPTION>`` variable, then from the file, then from the default.

A key we do not know is an error naming the file and its line, since a misspelt ``"treads"`` would
otherwise run with the wrong settings for months; cgminer's and cpuminer-opt's own keys that change
nothing here (GPU clocks, ``intensity``) are a warning, so their files load.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from miner.cli.common import CliError
from miner.logs import redact

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the same parser, from PyPI, before 3.11
    import tomli as tomllib

ENV_PREFIX = "MINER"
PRECEDENCE = (
    "Each option is taken from the command line, else from its MINER_<OPTION> environment variable "
    "(MINER_THREADS=2, MINER_URL='URL1 URL2'), else from --config FILE, else from its default."
)

#: cgminer's and cpuminer-opt's keys that select nothing this miner does differently: warned about, then ignored
FOREIGN_HARMLESS = frozenset(
    {
        # cgminer: GPU/ASIC tuning and display
        "intensity", "gpu-threads", "worksize", "kernel", "kernel-path", "lookup-gap", "thread-concurrency",
        "shaders", "gpu-engine", "gpu-memclock", "gpu-fan", "gpu-powertune", "gpu-vddc", "gpu-platform",
        "auto-fan", "auto-gpu", "temp-cutoff", "temp-target", "temp-overheat", "temp-hysteresis",
        "scan-time", "expiry", "queue", "shares", "compact", "per-device-stats", "text-only", "log",
        "api-mcast", "api-mcast-port", "api-mcast-addr", "api-mcast-code", "api-mcast-des", "api-description",
        "api-groups", "no-submit-stale", "submit-stale", "hotplug", "usb", "net-delay", "worktime",
        # cpuminer-opt: scheduling and the protocols it can fall back to
        "cpu-affinity", "cpu-priority", "no-color", "scantime", "no-getwork", "no-gbt", "no-redirect",
        "stratum-keepalive", "hash-meter", "max-temp", "max-rate", "max-diff", "no-extranonce",
    }
)  # fmt: skip

#: where a foreign key means one of ours, or means "what we do anyway" (checked by the function)
SAME_AS_OURS: dict[str, Callable[[Any], bool]] = {
    "failover-only": lambda value: value is True,  # failover is our pool strategy
    "algo": lambda value: str(value).lower() in ("sha256d", "sha256"),
}

PASSWORD_KEYS = ("pass",)


def _key(name: str) -> str:
    return name.replace("_", "-").lower()


def _params(command: click.Command) -> dict[str, click.Parameter]:
    """Config keys a command takes: each option's long names (``--api-listen`` -> ``api-listen``)."""
    keys: dict[str, click.Parameter] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in ("config", "write_config", "help"):
            continue
        for opt in param.opts + param.secondary_opts:
            if opt.startswith("--"):
                keys[_key(opt[2:])] = param
    return keys


class ConfigFile:
    """One parsed config file, with the line of each key for error messages."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise CliError(f"--config {path}: cannot read it: {exc.strerror or exc}", 2) from None
        try:
            self.text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CliError(f"{path}: not a text file (expected JSON or TOML in UTF-8)", 2) from None
        self.toml = path.lower().endswith(".toml")
        if self.toml:
            try:
                data = tomllib.loads(self.text)
            except tomllib.TOMLDecodeError as exc:
                raise CliError(f"{path}: not valid TOML: {exc}", 2) from None
        else:
            try:
                data = json.loads(self.text)
            except json.JSONDecodeError as exc:
                raise CliError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})", 2) from None
        if not isinstance(data, dict):
            raise CliError(f"{path}: expected an object of options at the top, got {type(data).__name__}", 2)
        self.data: dict[str, Any] = data

    def line_of(self, key: str, after: int = 0) -> int:
        """The line where ``key`` is set (the first after character ``after``); 1 where it cannot be found."""
        pattern = rf'"{re.escape(key)}"\s*[:=]' + (rf"|^\s*{re.escape(key)}\s*=" if self.toml else "")
        match = re.compile(pattern, re.MULTILINE).search(self.text, after)
        return self.text.count("\n", 0, match.start()) + 1 if match else 1

    def where(self, key: str, after: int = 0) -> str:
        return f"{self.path}:{self.line_of(key, after)}"

    def defaults_for(self, ctx: click.Context, warn: Callable[[str], None]) -> dict[str, Any]:
        """The file as a Click ``default_map`` for ``ctx.command``; every value checked by its option's type."""
        known = _params(ctx.command)
        data = dict(self.data)
        defaults: dict[str, Any] = {}
        if "pools" in data:
            pools = data.pop("pools")
            for name, values in self._pools(pools, known).items():
                defaults[name] = values
        if "api-port" in data and "api-listen" in known:  # cgminer: a boolean api-listen and a port beside it
            port = data.pop("api-port")
            if data.get("api-listen", True) is True:
                data["api-listen"] = f"127.0.0.1:{port}"
        if data.get("api-listen") is True and "api-listen" in known:
            data["api-listen"] = "127.0.0.1:4028"
        elif data.get("api-listen") is False:
            data.pop("api-listen")
        for key, value in data.items():
            name = _key(key)
            if name in SAME_AS_OURS:
                if not SAME_AS_OURS[name](value):
                    raise CliError(f"{self.where(key)}: {key} = {value!r} is not something this miner does", 2)
                continue
            if name in FOREIGN_HARMLESS:
                warn(f"{self.where(key)}: ignoring {key!r}, a setting of another miner that changes nothing here")
                continue
            param = known.get(name)
            if param is None:
                close = difflib.get_close_matches(name, list(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise CliError(f"{self.where(key)}: unknown key {key!r} for 'miner {ctx.info_name}'{hint}", 2)
            checked = self._check(ctx, param, key, value)
            if checked is not None or not _is_choice_flag(param):
                defaults[param.name] = checked
        return defaults

    def _pools(self, pools: Any, known: dict[str, click.Parameter]) -> dict[str, list]:
        if "url" not in known:
            raise CliError(f"{self.where('pools')}: 'pools' is not an option of this command", 2)
        if not isinstance(pools, list) or not all(isinstance(p, dict) for p in pools):
            raise CliError(f'{self.where("pools")}: \'pools\' must be a list of {{"url", "user", "pass"}}', 2)
        start = self.text.find('"pools"') if not self.toml else self.text.find("pools")
        urls, users, passwords = [], [], []
        for pool in pools:
            for key in pool:
                if key not in ("url", "user", "pass"):
                    raise CliError(f"{self.where(key, start)}: unknown key {key!r} in a pool (url, user, pass)", 2)
            if not isinstance(pool.get("url"), str):
                raise CliError(f'{self.where("pools")}: every pool needs a "url" string', 2)
            urls.append(pool["url"])
            users.append(str(pool.get("user", "")))
            passwords.append(str(pool.get("pass", "")))
        out: dict[str, list] = {known["url"].name: urls}
        if any(users):
            out[known["user"].name] = users
        if any(passwords):
            out[known["pass"].name] = passwords
        return out

    def _check(self, ctx: click.Context, param: click.Parameter, key: str, value: Any) -> Any:
        if _is_choice_flag(param):  # one of several flags for one setting (--load-balance, --round-robin)
            if not isinstance(value, bool):
                raise CliError(f"{self.where(key)}: {key} must be true or false, got {value!r}", 2)
            return param.flag_value if value else None  # type: ignore[attr-defined]
        if param.multiple and not isinstance(value, list):
            value = [value]
        if isinstance(param, click.Option) and param.is_flag and not param.multiple and not isinstance(value, bool):
            if param.flag_value is True or not isinstance(value, str):
                raise CliError(f"{self.where(key)}: {key} must be true or false, got {value!r}", 2)
        try:
            param.type_cast_value(ctx, value)
        except click.BadParameter as exc:
            raise CliError(f"{self.where(key)}: {key}: {exc.format_message()}", 2) from None
        return value


def _load(ctx: click.Context, param: click.Parameter, path: str | None) -> None:
    if path is None:
        return
    config = ConfigFile(path)
    defaults = config.defaults_for(ctx, lambda line: click.echo(f"miner: warning: {line}", err=True))
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta["config_file"] = path


def _is_choice_flag(param: click.Parameter) -> bool:
    return isinstance(param, click.Option) and param.is_flag and isinstance(param.flag_value, str)


def config_record(ctx: click.Context, include_passwords: bool) -> dict[str, Any]:
    """The options this run resolved, as a config file holds them (cgminer's shape for pools)."""
    record: dict[str, Any] = {}
    keys = {id(param): key for key, param in reversed(list(_params(ctx.command).items()))}
    for param in ctx.command.params:
        if id(param) not in keys or param.name not in ctx.params:
            continue
        value = ctx.params[param.name]
        if _is_choice_flag(param):
            if value is not None and value == param.flag_value:  # type: ignore[attr-defined]
                record[keys[id(param)]] = True
            continue
        if value is None or (param.multiple and not value):
            continue
        record[keys[id(param)]] = list(value) if param.multiple else value
    if "url" in record:
        users, passwords = record.pop("user", []), record.pop("pass", [])
        pools = []
        for i, url in enumerate(record.pop("url")):
            pool: dict[str, str] = {"url": url}
            for key, values in (("user", users), ("pass", passwords)):
                if values:
                    pool[key] = values[i] if i < len(values) else values[-1]
            pools.append(pool)
        record = {"pools": pools, **record}
    if not include_passwords:
        for pool in record.get("pools", []):
            pool.pop("pass", None)
        record = {key: redact(value) if isinstance(value, str) else value for key, value in record.items()}
        for pool in record.get("pools", []):
            pool["url"] = redact(pool["url"])
    return record


def _toml(record: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    lines = [f"{json.dumps(k)} = {value(v)}" for k, v in record.items() if k != "pools"]
    for pool in record.get("pools", []):
        lines += ["", "[[pools]]", *(f"{k} = {value(v)}" for k, v in pool.items())]
    return "\n".join(lines) + "\n"


def write_config(ctx: click.Context, path: str) -> str:
    """Save the resolved options to ``path``; passwords only where the file is private (mode 0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise CliError(f"--write-config {path}: {exc.strerror or exc}", 1) from None
    with os.fdopen(fd, "w") as fh:
        private = stat.S_IMODE(os.fstat(fh.fileno()).st_mode) & 0o077 == 0
        record = config_record(ctx, include_passwords=private)
        fh.write(_toml(record) if path.lower().endswith(".toml") else json.dumps(record, indent=2) + "\n")
    note = "" if private else " (without passwords: the file is readable by others; chmod 600 it to keep them)"
    return f"wrote {len(record)} setting(s) to {path}{note}"


def name_envvars(command: click.Command) -> click.Command:
    """Give each option of ``command`` its ``MINER_<OPTION>`` variable, named for its long option
    (``--pool-timeout``: MINER_POOL_TIMEOUT; ``-o/--url``: MINER_URL), not for its Python name."""
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar is None and param.name not in ("help", "write_config"):
            longs = [opt for opt in param.opts if opt.startswith("--")]
            if longs:
                param.envvar = f"{ENV_PREFIX}_{longs[0][2:].replace('-', '_').upper()}"
    return command


def _remember_write_target(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta["write_config"] = value


def config_options(func):
    """--config FILE and --write-config FILE for a command (miner.cli names its MINER_<OPTION> variables)."""

    @functools.wraps(func)
    @click.pass_context
    def wrapper(ctx: click.Context, *args, **kwargs):
        target = ctx.meta.get("write_config")
        if target is not None:
            click.echo(write_config(ctx, target), err=True)
            return None
        return func(*args, **kwargs)

    wrapper = click.option(
        "--write-config",
        type=click.Path(dir_okay=False),
        default=None,
        expose_value=False,
        callback=_remember_write_target,
        metavar="FILE",
        help="save these options to FILE (.json or .toml) and exit; passwords kept only in a file of mode 0600",
    )(wrapper)
    return click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        is_eager=True,
        expose_value=False,
        callback=_load,
        metavar="FILE",
        help="read options from a JSON or TOML file (cgminer's key names). " + PRECEDENCE,
    )(wrapper)
