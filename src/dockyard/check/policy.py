"""The policy file of ``dockyard check``: which rules run, with what limits, how severe.

::

    user: {allow_root: false}                     # uid 0 (or no USER at all) fails
    max_size: {compressed: 200MB, uncompressed: 1GB}
    max_layers: {max: 30}
    base: {allowed: [docker.io/library/debian:bookworm, "docker://HOST/base@sha256:..."]}
    labels: {required: {org.opencontainers.image.source: "^https://"}}
    secrets: {allow: ["/usr/share/doc/*"]}        # private keys, cloud keys, tokens
    files:
      forbidden: ["/root/.ssh/*", "*.pem"]
      setuid_allowed: [/usr/bin/passwd]
      world_writable_allowed: [/tmp, "/tmp/*"]
    config:
      forbidden_env: ["*_TOKEN", "*PASSWORD*"]
      require_healthcheck: true
      allowed_ports: ["8080/tcp"]
    packages: {deny: ["openssl <3.0.7", telnet]}

Every rule takes ``severity: error`` (the default: a finding fails the check) or
``warning``. Globs match whole absolute paths, ``*`` crossing ``/`` (``*.pem`` is any
``.pem`` file). Unknown fields are errors, and every error names ``file:line``,
with the same YAML reader and messages as pipeline files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from dockyard import yamlmarks
from dockyard.check.versions import parse_constraint
from dockyard.errors import InvalidFile, Problem
from dockyard.layers.limits import parse_size
from dockyard.yamlmarks import field_name

MAX_FILE_SIZE = 1 << 20
Severity = Literal["error", "warning"]
_DECIMAL = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(I?B)?")


class PolicyError(InvalidFile):
    """The policy file is invalid; ``problems`` lists every error, in file order."""


def parse_bytes(value: object) -> int:
    """Bytes from ``1048576``, ``200MB`` (decimal, as docker prints) or ``1GiB``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip().upper())
        if match and match[3] == "IB":
            size = parse_size(f"{match[1]}{match[2]}", "size") if match[1].isdigit() else None
            if size:
                return size
        elif match and float(match[1]) > 0:
            return int(float(match[1]) * _DECIMAL[match[2]])
    raise ValueError(f"invalid size {value!r}: expected bytes or e.g. 200MB, 1GiB")


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"invalid regular expression {value!r}: {e}") from None
    return value


def _glob(value: str) -> str:
    if not value.startswith(("/", "*")):
        raise ValueError(f"{value!r}: a path glob starts with / or *")
    return value


def _deny(value: str) -> str:
    parse_constraint(value)
    return value


def _port(value: object) -> str:
    text = str(value).strip().lower()
    if not re.fullmatch(r"\d{1,5}(?:-\d{1,5})?(?:/(?:tcp|udp|sctp))?", text):
        raise ValueError(f"invalid port {value!r}: expected e.g. 8080, 8080/tcp, 8000-8100/udp")
    return text if "/" in text else f"{text}/tcp"


Size = Annotated[int, BeforeValidator(parse_bytes)]
Glob = Annotated[str, AfterValidator(_glob)]
Globs = tuple[Glob, ...]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    severity: Severity = "error"


class UserRule(_Rule):
    allow_root: bool = False


class MaxSizeRule(_Rule):
    compressed: Size | None = None
    uncompressed: Size | None = None


class MaxLayersRule(_Rule):
    max: int = Field(ge=1)


class BaseRule(_Rule):
    allowed: tuple[str, ...] = Field(min_length=1)


class LabelsRule(_Rule):
    required: dict[str, Annotated[str, AfterValidator(_regex)] | None] = Field(min_length=1)


class SecretsRule(_Rule):
    allow: Globs = ()
    entropy: bool = True  # high-entropy strings assigned to secret-like names
    max_file_size: Size = 1 << 20  # bytes of each text file read (from its start)


class FilesRule(_Rule):
    forbidden: Globs = ()
    setuid_allowed: Globs = ()
    # /tmp and the other sticky scratch dirs every distribution makes world-writable.
    world_writable_allowed: Globs = (
        "/tmp", "/tmp/*", "/var/tmp", "/var/tmp/*", "/run/lock", "/var/lock", "/dev/shm",
    )  # fmt: skip


class ConfigRule(_Rule):
    forbidden_env: tuple[str, ...] = ()
    require_healthcheck: bool = False
    allowed_ports: tuple[Annotated[str, BeforeValidator(_port)], ...] | None = None


class PackagesRule(_Rule):
    deny: tuple[Annotated[str, AfterValidator(_deny)], ...] = Field(min_length=1)


class Policy(BaseModel):
    """Rules to run; a rule left out does not run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    user: UserRule | None = None
    max_size: MaxSizeRule | None = None
    max_layers: MaxLayersRule | None = None
    base: BaseRule | None = None
    labels: LabelsRule | None = None
    secrets: SecretsRule | None = None
    files: FilesRule | None = None
    config: ConfigRule | None = None
    packages: PackagesRule | None = None

    def enabled(self) -> list[str]:
        """The names of the rules this policy runs, in field order."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


DEFAULT_POLICY = Policy(user=UserRule(severity="warning"), secrets=SecretsRule())
"""Without ``--policy``: secrets fail the check, a root user is a warning."""


def load_policy(file: str | Path) -> Policy:
    """Read and validate a policy file; raise :class:`PolicyError` naming ``file:line``."""
    path = str(file)
    try:
        with open(file, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        raise PolicyError(path, [Problem("", f"cannot read: {e.strerror}", None)]) from None
    return policy_from_bytes(data, path)


def policy_from_bytes(data: bytes, path: str) -> Policy:
    """Validate a policy file's content; ``path`` names it in errors.

    The content is read up to ``MAX_FILE_SIZE + 1`` bytes, so that a larger one is refused."""
    if len(data) > MAX_FILE_SIZE:
        raise PolicyError(path, [Problem("", "larger than 1 MiB", None)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise PolicyError(path, [Problem("", "not UTF-8 text", line)]) from None
    return parse_policy(text, path)


def parse_policy(text: str, file: str) -> Policy:
    """Validate a policy's text (``file`` names it in errors)."""
    try:
        document = yamlmarks.load(text)
    except yamlmarks.YamlError as e:
        raise PolicyError(file, [Problem("", e.message, e.line)]) from None
    if not isinstance(document.data, dict) or not document.data:
        raise PolicyError(file, [Problem("", "expected a mapping of rules", 1)])
    try:
        return Policy.model_validate(document.data)
    except ValidationError as e:
        problems = [_problem(error, document) for error in e.errors(include_url=False)]
        problems.sort(key=lambda problem: problem.line or 0)
        raise PolicyError(file, problems) from None


def _problem(error: ErrorDetails, document: yamlmarks.MarkedDocument) -> Problem:
    loc = tuple(part for part in error["loc"] if part != "[key]")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field" if len(loc) > 1 else "unknown rule"
    elif error["type"] == "missing":
        message = "required field missing"
    # A model given as a rule's value: pydantic's loc names the value type too.
    loc = tuple(part for part in loc if part not in ("str", "int", "constrained-str"))
    return Problem(field_name(loc), message, document.line_of(loc))
