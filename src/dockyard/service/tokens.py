"""API tokens: who may do what.

A token is 256 random bits shown once; the database keeps only its SHA-256 (a
high-entropy token needs no slow hash). Users' roles are ordered: ``read`` lists and
follows, ``write`` also triggers and cancels, ``admin`` also manages repositories,
secrets and tokens. ``agent`` is apart: it only speaks the agent protocol, and an
agent token is refused everywhere else (as a user token is on the agent routes).
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.service.models import Agent, Token

READ, WRITE, ADMIN, AGENT = "read", "write", "admin", "agent"
USER_ROLES = (READ, WRITE, ADMIN)
ROLES = (*USER_ROLES, AGENT)
PREFIX = "dyt_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, role: str) -> str:
    """A new token of ``role``; the returned value is never stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(Token(name=name, role=role, digest=digest(token)))
    return token


def role_of(session: Session, token: str) -> str | None:
    """The role of ``token``, or None if it is unknown."""
    return session.scalar(select(Token.role).where(Token.digest == digest(token)))


def id_of(session: Session, token: str) -> int | None:
    """The id of the stored ``token``, or None if it is unknown."""
    return session.scalar(select(Token.id).where(Token.digest == digest(token)))


def may_act_as(session: Session, agent: Agent, token_id: int | None) -> bool:
    """Whether the agent token ``token_id`` may act as ``agent``.

    The name belongs to the token that first used it, until that token is deleted.
    """
    if agent.token_id in (None, token_id):
        return True
    return session.get(Token, agent.token_id) is None


def allows(role: str | None, needed: str) -> bool:
    """Whether a token of ``role`` may do what needs ``needed``."""
    if role is None:
        return False
    if needed == AGENT or role == AGENT:
        return role == needed
    return USER_ROLES.index(role) >= USER_ROLES.index(needed)
