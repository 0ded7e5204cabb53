"""``--chmod`` and ``--chown`` of COPY/ADD, with BuildKit's exact rules.

``--chmod`` is octal (``0755``, up to ``07777``) or symbolic (``u+x,go-w``): BuildKit
parses the symbolic form with ``tonistiigi/dchapes-mode``, a port of BSD's
``setmode(3)`` with umask 0; :class:`ModeSet` is a port of that port, so ``X``, ``=``,
``u=g`` and the quirks (``X`` only counts with ``+``) behave the same.

``--chown=user[:group]`` is resolved as BuildKit's ``llb.WithUser`` and ``readUser``
resolve it, against the *destination* rootfs's ``/etc/passwd`` and ``/etc/group``:
``root`` and numbers are ids without a lookup (a numeric user alone means ``uid:uid``),
a user name takes its passwd uid and primary gid, an explicit group replaces the gid,
an empty part (``:1`` or ``user:``) means 0. BuildKit silently maps unknown names to 0;
with ``strict`` (COPY/ADD) we refuse them instead, as docker's classic builder does.
"""

from __future__ import annotations

import os
import stat

from dockyard.builder.frontend.records import Record, record
from dockyard.errors import DockyardError
from dockyard.runtime import inroot

# chmod(1) bits, as dchapes-mode names them
_SUID, _SGID, _STICKY = 0o4000, 0o2000, 0o1000
_RWXU, _RWXG, _RWXO = 0o700, 0o070, 0o007
_R, _W, _X = 0o444, 0o222, 0o111
_STANDARD = _SUID | _SGID | _RWXU | _RWXG | _RWXO
_ALL = 0xFFFF  # ^umask with umask 0, as a 16-bit modet

_CLEAR, _SET, _GBITS, _OBITS, _UBITS = 1, 2, 4, 8, 16


@record
class _Cmd(Record):
    cmd: str  # + - X u g o
    bits: int
    cmd2: int = 0


class ModeSet:
    """A parsed symbolic mode: :meth:`apply` it to a file's mode."""

    def __init__(self, spec: str):
        self.cmds = _compress(_parse(spec))

    def apply(self, mode: int) -> int:
        """The new permission bits (``0o7777``) for an entry whose ``st_mode`` is ``mode``."""
        old = stat.S_IMODE(mode)
        new = old

        def common(c: _Cmd, value: int) -> None:
            nonlocal new
            if c.cmd2 & _CLEAR:
                clear = _RWXO if c.cmd2 & _SET else value
                if c.cmd2 & _UBITS:
                    new &= ~((clear << 6) & c.bits)
                if c.cmd2 & _GBITS:
                    new &= ~((clear << 3) & c.bits)
                if c.cmd2 & _OBITS:
                    new &= ~(clear & c.bits)
            if c.cmd2 & _SET:
                if c.cmd2 & _UBITS:
                    new |= (value << 6) & c.bits
                if c.cmd2 & _GBITS:
                    new |= (value << 3) & c.bits
                if c.cmd2 & _OBITS:
                    new |= value & c.bits

        for c in self.cmds:
            if c.cmd == "u":
                common(c, (new & _RWXU) >> 6)
            elif c.cmd == "g":
                common(c, (new & _RWXG) >> 3)
            elif c.cmd == "o":
                common(c, new & _RWXO)
            elif c.cmd == "+":
                new |= c.bits
            elif c.cmd == "-":
                new &= ~c.bits
            elif c.cmd == "X" and (old & _X or stat.S_ISDIR(mode)):
                new |= c.bits
        return new & 0o7777


def _add(cmds: list[_Cmd], op: str, who: int, oparg: int) -> None:
    """dchapes-mode ``addcmd`` (mask is all bits: umask 0)."""
    if op == "=":
        cmds.append(_Cmd("-", who or _STANDARD))
        op = "+"
    if op in "+-X":
        cmds.append(_Cmd(op, (who & oparg) if who else (_ALL & oparg)))
        return
    # op is u, g or o: copy those bits; oparg is the operator
    if who:
        cmd2 = (
            (_UBITS if who & 0o400 else 0)
            | (_GBITS if who & 0o040 else 0)
            | (_OBITS if who & 0o004 else 0)
        )
        bits = _ALL
    else:
        cmd2, bits = _UBITS | _GBITS | _OBITS, _ALL
    cmd2 |= {"+": _SET, "-": _CLEAR, "=": _SET | _CLEAR}[chr(oparg)]
    cmds.append(_Cmd(op, bits, cmd2))


def _parse(spec: str) -> list[_Cmd]:
    """dchapes-mode ``ParseWithUmask(spec, 0)`` for the symbolic form."""
    bad = ValueError(f"invalid chmod parameter: '{spec}'")
    cmds: list[_Cmd] = []
    s = spec
    if not s:
        raise bad
    while True:
        who = 0
        while True:
            if not s:
                raise bad
            if s[0] == "a":
                who |= _STANDARD
            elif s[0] == "u":
                who |= _SUID | _RWXU
            elif s[0] == "g":
                who |= _SGID | _RWXG
            elif s[0] == "o":
                who |= _RWXO
            else:
                break
            s = s[1:]
        while True:  # getop
            if not s:
                raise bad
            op, s = s[0], s[1:]
            if op not in "+-=":
                raise bad
            equal_done = False
            who &= ~_STICKY
            perm = perm_x = 0
            while True:
                b = s[0] if s else ""
                if b == "r":
                    perm |= _R
                elif b == "s":
                    if who == 0 or who & ~_RWXO:
                        perm |= _SUID | _SGID
                elif b == "t":
                    if who == 0 or who & ~_RWXO:
                        who |= _STICKY
                        perm |= _STICKY
                elif b == "w":
                    perm |= _W
                elif b == "X":
                    if op == "+":
                        perm_x = _X
                elif b == "x":
                    perm |= _X
                elif b in ("u", "g", "o"):
                    if perm:
                        _add(cmds, op, who, perm)
                        perm = 0
                    if op == "=":
                        equal_done = True
                    if perm_x:
                        _add(cmds, "X", who, perm_x)
                        perm_x = 0
                    _add(cmds, b, who, ord(op))
                else:
                    if perm or (op == "=" and not equal_done):
                        if op == "=":
                            equal_done = True
                        _add(cmds, op, who, perm)
                    if perm_x:
                        _add(cmds, "X", who, perm_x)
                    break
                s = s[1:]
            if not s:
                return cmds
            if s[0] != ",":
                continue  # another operator for the same "who"
            s = s[1:]
            break


def _compress(cmds: list[_Cmd]) -> list[_Cmd]:
    """dchapes-mode ``compress``: runs of + - X merged (it changes what X sees)."""
    out: list[_Cmd] = []
    i = 0
    while i < len(cmds):
        c = cmds[i]
        if c.cmd not in "+-X":
            out.append(c)
            i += 1
            continue
        set_bits = clr_bits = x_bits = 0
        while i < len(cmds) and cmds[i].cmd in "+-X":
            c = cmds[i]
            if c.cmd == "-":
                clr_bits |= c.bits
                set_bits &= ~c.bits
                x_bits &= ~c.bits
            elif c.cmd == "+":
                set_bits |= c.bits
                clr_bits &= ~c.bits
                x_bits &= ~c.bits
            else:
                x_bits |= c.bits & ~set_bits
            i += 1
        if clr_bits:
            out.append(_Cmd("-", clr_bits))
        if set_bits:
            out.append(_Cmd("+", set_bits))
        if x_bits:
            out.append(_Cmd("X", x_bits))
    return out


@record
class Chmod(Record):
    """A ``--chmod`` value: ``octal`` (``0o7777`` at most) or a symbolic :class:`ModeSet`."""

    octal: int | None = None
    symbolic: ModeSet | None = None

    @classmethod
    def parse(cls, spec: str) -> Chmod | None:
        """Parse a ``--chmod`` spec; None for an empty one.

        ValueError with BuildKit's message if invalid (a spec starting with a digit gets
        the octal one).
        """
        if not spec:
            return None
        if spec[:1].isascii() and spec[:1].isdigit():
            if any(c not in "01234567" for c in spec) or int(spec, 8) > 0o7777:
                raise ValueError(
                    f"invalid chmod parameter: '{spec}'. it should be octal string and "
                    "between 0 and 07777"
                )
            return cls(octal=int(spec, 8))
        return cls(symbolic=ModeSet(spec))

    def apply(self, mode: int) -> int:
        """Permission bits for a copied entry whose source ``st_mode`` is ``mode``."""
        if self.symbolic is not None:
            return self.symbolic.apply(mode)
        assert self.octal is not None
        return self.octal

    @property
    def dir_mode(self) -> int:
        """Mode of directories the copy creates on the way.

        fsutil's ``MkdirAll`` gets the octal mode (Go drops its setuid/setgid/sticky
        bits there), else 0755.
        """
        return self.octal & 0o777 if self.octal is not None else 0o755


def dir_mode(chmod: Chmod | None) -> int:
    return chmod.dir_mode if chmod is not None else 0o755


# -- owners ----------------------------------------------------------------------------

_MAX_ID = 2**31 - 1


def _numeric_id(text: str) -> int | None:
    """llb's ``parseUID``: ``root`` is 0, a 32-bit decimal is an id, anything else a name."""
    if text == "root":
        return 0
    if text.isascii() and text.isdigit() and int(text) <= _MAX_ID:
        return int(text)
    return None


def _lookup(rootfs: str | os.PathLike[str], path: str, name: str, id_field: int) -> list[str]:
    """The first ``name:...`` line of ``path`` in ``rootfs`` (symlinks resolved inside
    it), as its fields; [] if the file or the name is missing."""
    try:
        data = inroot.read_file(rootfs, path, limit=10 << 20)
    except DockyardError as e:
        raise ValueError(str(e)) from None
    if data is None:
        return []
    for raw in data.decode("utf-8", "surrogateescape").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if fields[0] == name:
            fields += [""] * (id_field + 2 - len(fields))
            return fields
    return []


def _field_id(value: str) -> int:
    """Go's ``strconv.Atoi`` with the error ignored, as moby/sys/user parses ids."""
    try:
        return int(value)
    except ValueError:
        return 0


def resolve_owner(
    spec: str, rootfs: str | os.PathLike[str], *, strict: bool
) -> tuple[int, int] | None:
    """``(uid, gid)`` for a ``--chown``/USER spec, names looked up in ``rootfs``.

    None for an empty spec. ValueError for an unknown name when ``strict``.
    """
    if not spec:
        return None
    user, has_group, group = spec.partition(":")
    uid = gid = 0
    number = _numeric_id(user)
    if number is not None:
        uid = gid = number
    elif user:
        entry = _lookup(rootfs, "/etc/passwd", user, 3)
        if entry:
            uid, gid = _field_id(entry[2]), _field_id(entry[3])
        elif user == "root":
            pass  # 0:0 without a passwd file, as BuildKit (COPY --link has none to read)
        elif strict:
            raise ValueError(f"unable to find user {user}: no matching entries in passwd file")
    if has_group:
        number = _numeric_id(group)
        if number is not None:
            gid = number
        elif not group:
            gid = 0
        else:
            entry = _lookup(rootfs, "/etc/group", group, 2)
            if entry:
                gid = _field_id(entry[2])
            elif group == "root":
                gid = 0
            elif strict:
                raise ValueError(f"unable to find group {group}: no matching entries in group file")
    return uid, gid
