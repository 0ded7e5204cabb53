"""Go's text formats that Dockerfile semantics leak: quoting, durations, paths, numbers.

BuildKit writes image history with Go's ``%q``/``%v`` verbs and parses durations,
booleans and paths with Go's standard library; these helpers reproduce those exactly so
our history lines and error cases match docker's.
"""

from __future__ import annotations

import re

_ESCAPES = {
    "\a": r"\a",
    "\b": r"\b",
    "\f": r"\f",
    "\n": r"\n",
    "\r": r"\r",
    "\t": r"\t",
    "\v": r"\v",
    "\\": r"\\",
    '"': r"\"",
}


def quote(text: str) -> str:
    """``strconv.Quote``: a double-quoted Go string literal."""
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def format_list(items: list[str] | tuple[str, ...]) -> str:
    """``fmt.Sprintf("%v", []string{...})``: ``[a b c]``."""
    return "[" + " ".join(items) + "]"


def format_quoted_list(items: list[str] | tuple[str, ...]) -> str:
    """``fmt.Sprintf("%q", []string{...})``: ``["a" "b c"]``."""
    return "[" + " ".join(quote(i) for i in items) + "]"


def parse_bool(text: str) -> bool:
    """``strconv.ParseBool``; raises ValueError for anything else."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(text)


def parse_uint(text: str, base: int, bits: int = 32) -> int:
    """``strconv.ParseUint`` with an explicit base: digits only, no sign, no ``_``."""
    digits = "01234567"[:base] if base <= 8 else "0123456789"
    if not text or any(c not in digits for c in text):
        raise ValueError(text)
    value = int(text, base)
    if value >= 1 << bits:
        raise ValueError(text)
    return value


_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_MAX_INT64 = (1 << 63) - 1


def parse_duration(text: str) -> int:
    """``time.ParseDuration`` in nanoseconds (``1m30s``, ``1.5h``, ``300ms``)."""
    s = text
    negative = s[:1] == "-"
    if s[:1] in ("-", "+"):
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {quote(text)}")
    total = 0
    while s:
        m = _DURATION_PART.match(s)
        assert m is not None  # every part of it may be empty: it always matches
        integer, fraction, unit = m.group(1), m.group(2), m.group(3)
        if not integer and not fraction:
            raise ValueError(f"time: invalid duration {quote(text)}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {quote(text)}")
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {quote(unit)} in duration {quote(text)}")
        scale = _UNITS[unit]
        value = int(integer or "0") * scale
        if fraction:
            value += int(float(int(fraction)) * (scale / 10 ** len(fraction)))
        total += value
        if total > _MAX_INT64 + (1 if negative else 0):
            raise ValueError(f"time: invalid duration {quote(text)}")
        s = s[m.end() :]
    return -total if negative else total


def _fraction(value: int, digits: int) -> tuple[str, int]:
    """Go's fmtFrac: ``.ddd`` without trailing zeros (empty if zero), and the integer part."""
    frac = value % 10**digits
    text = f"{frac:0{digits}d}".rstrip("0") if frac else ""
    return ("." + text if text else ""), value // 10**digits


def format_duration(ns: int) -> str:
    """``time.Duration.String``: ``1h2m3.5s``, ``1.5ms``, ``0s``."""
    sign, u = ("-", -ns) if ns < 0 else ("", ns)
    if u == 0:
        return "0s"
    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        unit, digits = ("µs", 3) if u < 1_000_000 else ("ms", 6)
        frac, whole = _fraction(u, digits)
        return f"{sign}{whole}{frac}{unit}"
    frac, seconds = _fraction(u, 9)
    out = f"{seconds % 60}{frac}s"
    minutes = seconds // 60
    if minutes:
        out = f"{minutes % 60}m" + out
        hours = minutes // 60
        if hours:
            out = f"{hours}h" + out
    return sign + out


def clean_path(path: str) -> str:
    """``filepath.Clean`` on a slash-separated path (unlike normpath, ``//a`` -> ``/a``)."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for element in path.split("/"):
        if element in ("", "."):
            continue
        if element == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(element)
    joined = "/".join(parts)
    if rooted:
        return "/" + joined
    return joined or "."
