"""Password checks that never stall the server and cannot be brute-forced quickly.

bcrypt is slow on purpose (~0.25 s at cost 12); on the event loop every wrong password
would freeze every other request for that long. So:

- a password found good moments ago is accepted from :class:`~.auth.Htpasswd`'s cache
  (an HMAC lookup, fine on the event loop);
- every other check runs bcrypt in a small pool of its own (:data:`BCRYPT_THREADS`), so
  a flood of checks queues there while the event loop and the I/O pool serve on;
- concurrent checks of one user and password share one bcrypt run (a client that
  opens many connections at once does not spend its failure budget on them);
- before bcrypt runs, the attempt spends a token of its client address and one of its
  user name (:mod:`.ratelimit`); a good password gets them back, so only failures count.
  With either bucket empty the answer is ``429 TOOMANYREQUESTS`` with ``Retry-After``
  and no bcrypt at all. A user whose bucket an attacker emptied keeps working from any
  client whose good password is still remembered; new logins of that user wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import math

from dockyard.registry.server.apierrors import APIError
from dockyard.registry.server.auth import Htpasswd
from dockyard.registry.server.ratelimit import Buckets

log = logging.getLogger("dockyard.registry.server")

BCRYPT_THREADS = 2


class Logins:
    """Checks ``user:password`` for a client address against an htpasswd file."""

    def __init__(self, htpasswd: Htpasswd, failure_limit: int):
        """``failure_limit``: failures a client, and a user, may have in a burst and per
        minute."""
        self.htpasswd = htpasswd
        self.by_client = Buckets(failure_limit, failure_limit)
        self.by_user = Buckets(failure_limit, failure_limit)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            BCRYPT_THREADS, thread_name_prefix="registry-bcrypt"
        )
        self._pending: dict[bytes, asyncio.Future[bool]] = {}  # checks under way

    async def check(self, client: str, user: str, password: str) -> bool:
        """True for a good password.

        Raises 429 when the client or the user failed too often lately.
        """
        if self.htpasswd.remembered(user, password):
            return True
        if self.htpasswd.broken is not None:
            return False  # refused, but not the client's failure
        fingerprint = self.htpasswd.fingerprint(user, password)
        if fingerprint is not None and fingerprint in self._pending:
            return await asyncio.shield(self._pending[fingerprint])  # the same check: share it
        user_key = hashlib.sha256(user.encode()).hexdigest()  # names can be 64 KiB long
        wait = self.by_client.take(client)
        if wait is None:
            wait = self.by_user.take(user_key)
            if wait is not None:
                self.by_client.give_back(client)
        if wait is not None:
            raise APIError(
                "TOOMANYREQUESTS",
                "too many failed logins; try again later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        loop = asyncio.get_running_loop()
        pending = loop.run_in_executor(self._pool, self.htpasswd.check, user, password)
        if fingerprint is not None:
            self._pending[fingerprint] = pending
        try:
            ok = await asyncio.shield(pending)
        finally:
            if fingerprint is not None:
                self._pending.pop(fingerprint, None)
        if ok:
            self.by_client.give_back(client)
            self.by_user.give_back(user_key)
        elif self.by_client.exhausted(client) or self.by_user.exhausted(user_key):
            log.warning("too many failed logins from %s as %r: throttled", client, user[:64])
        return ok

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
