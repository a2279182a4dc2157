"""How the runnable scripts start and end: one command-line style, and user errors as one line.

Start: every script in train/, eval/, tokenizers/ and mixing/ has a typed config dataclass and
takes `[--config FILE] [key=value ...]` (`parse_config`): the dataclass's defaults, then the
YAML file, then the `key=value` words (`unimodal.config.load_config`). `--help` lists every key
(nested dataclasses as dotted keys, e.g. `sampling.cfg_scale`) with its type, default and the
comment written next to the field. The only other flag is `--resume [PATH]`, for the scripts that
resume a training run.

End (`run_main`): errors the code raises to explain bad input (a config key, a missing file, an
out-of-range value, bad data) print `error: <message>` and exit with code 2. Anything else keeps
its traceback. Set UNIMODAL_TRACEBACK=1 to see the traceback of the explained errors too.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from unimodal.config import ConfigError, load_config

T = TypeVar("T")

# ValueError covers checkpointing.UnsafeFileError too; not importing it keeps this module (and
# scripts that only read JSON, like eval/quickstart_summary.py) free of torch's import.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ValueError, FileNotFoundError,
                                                FileExistsError)

_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.*)$")


def _field_comments(schema: type) -> dict[str, str]:
    """The `# comment` written after each field in the class bodies (the shape comments)."""
    comments: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        for line in lines:
            match = _COMMENT.match(line)
            if match:
                comments[match.group(1)] = match.group(2).strip()
    return comments


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    text = re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", str(hint))  # typing.Optional -> Optional
    return re.sub(r"Optional\[(.*)\]", r"\1 | None", text)


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def config_keys(schema: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, comment) of every field; nested dataclasses are walked."""
    hints = typing.get_type_hints(schema)
    comments = _field_comments(schema)
    rows = []
    for field in dataclasses.fields(schema):
        hint = hints[field.name]
        key = prefix + field.name
        if dataclasses.is_dataclass(hint):
            rows += config_keys(hint, key + ".")
            continue
        value = _default(field)
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        shown = '""' if value == "" else "null" if value is None else str(value)
        rows.append((key, _type_name(hint), shown, comments.get(field.name, "")))
    return rows


def overrides_of(cfg: Any, prefix: str = "") -> list[str]:
    """`key=value` words that set every field of a config instance (to hand a child script)."""
    words = []
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if dataclasses.is_dataclass(value):
            words += overrides_of(value, f"{prefix}{field.name}.")
        else:
            words.append(f"{prefix}{field.name}={json.dumps(value)}")
    return words


def config_help(schema: type, script: str, doc: str | None, resume: bool = False) -> str:
    rows = config_keys(schema)
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    usage = f"usage: python {script} [--config FILE] [key=value ...]"
    usage += " [--resume [PATH]]" if resume else ""
    lines = [usage, "", (doc or "").strip(), "",
             f"keys of {schema.__name__} (key=value on the command line; a YAML file given with "
             "--config sets the same keys, nested as sections):"]
    for key, kind, default, comment in rows:
        line = f"  {key:<{width[0]}}  {kind:<{width[1]}}  {default:<{width[2]}}  {comment}"
        lines.append(line.rstrip())
    if resume:
        lines += ["", "--resume [PATH]: go on from the latest checkpoint of the run, or from PATH"]
    return "\n".join(lines)


def script_name(path: str) -> str:
    """`eval/sample.py` for /any/checkout/eval/sample.py."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def _split(argv: Sequence[str], script: str, resume: bool):
    config, words, resume_from, help_ = None, [], None, False
    hint = f"{script} takes [--config FILE] [key=value ...]; --help lists the keys"
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if arg in ("-h", "--help"):
            help_ = True
        elif name == "--config":
            if not eq:
                i += 1
                if i == len(args):
                    raise ConfigError(f"{script}: --config needs a FILE")
                value = args[i]
            config = value
        elif resume and name == "--resume":
            if eq:
                resume_from = value
            elif i + 1 < len(args) and "=" not in args[i + 1] and not args[i + 1].startswith("-"):
                i += 1
                resume_from = args[i]
            else:
                resume_from = "latest"
        elif name in ("--local_rank", "--local-rank"):  # from the DeepSpeed launcher
            if not eq:
                i += 1
        elif arg.startswith("-"):
            raise ConfigError(f"{script}: unknown option {arg!r}; {hint}")
        elif not eq or not name:
            raise ConfigError(f"{script}: {arg!r} is not key=value; {hint}")
        else:
            words.append(arg)
        i += 1
    return config, words, resume_from, help_


def _parse(schema: type[T], argv: Sequence[str] | None, doc: str | None, script: str,
           resume: bool) -> tuple[T, str | None]:
    name = script_name(script)
    args = sys.argv[1:] if argv is None else argv
    config, words, resume_from, help_ = _split(args, name, resume)
    if help_:
        print(config_help(schema, name, doc, resume))
        raise SystemExit(0)
    try:
        cfg = load_config(schema, config, words)
    except ConfigError as err:
        raise ConfigError(f"{name}: {err} (--help lists the keys)") from err
    return cfg, resume_from


def parse_config(schema: type[T], argv: Sequence[str] | None, doc: str | None, script: str) -> T:
    """The script's validated config from `[--config FILE] [key=value ...]` (`--help` prints the
    keys and exits). `script` is the script's `__file__`, named in errors and in the help."""
    return _parse(schema, argv, doc, script, resume=False)[0]


def parse_config_and_resume(schema: type[T], argv: Sequence[str] | None, doc: str | None,
                            script: str) -> tuple[T, str | None]:
    """As `parse_config`, plus `--resume [PATH]`: (config, None | "latest" | PATH)."""
    return _parse(schema, argv, doc, script, resume=True)


def _user_errors() -> tuple[type[BaseException], ...]:
    # A DataError can only come from a run that imported its module: looked up, not imported
    # here, so a script that never reads data does not pay for torch's import.
    data = sys.modules.get("unimodal.data.image_sources")
    return USER_ERRORS if data is None else (*USER_ERRORS, data.DataError)


def run_main(main: Callable[[], object]) -> None:
    try:
        main()
    except Exception as err:
        if not isinstance(err, _user_errors()) or os.environ.get("UNIMODAL_TRACEBACK"):
            raise
        print(f"error: {err}\n(UNIMODAL_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)
