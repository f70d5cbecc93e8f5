"""Grants this replica posted to other replicas' mailboxes, watched until they are read.

A live replica reads a grant within milliseconds of its post: its grant loop waits on its
mailbox with ``BLPOP``. A grant still unread after :data:`UNREAD_FOR` means its replica is
dead (``kill -9``, a node lost) or stalled, long before its record lapses: every slot granted
to its waiters meanwhile would sit idle for a grant TTL (10 s by default). So the replica
that posted it takes that mailbox's grants back, and has the store count the silent replica
as dead from then on (:meth:`gateway.store.admission.AdmissionStore.bury`): its waiters are
dropped instead of granted, and the slots go to the next waiters. A replica that was only
stalled learns at its next script that its record had lapsed, and queues its waiters again
(those whose grants were taken back among them): nothing is lost, they lose their places.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass

from gateway.store.admission import AdmissionStore, Grant

__all__ = ["UNREAD_FOR", "Silent", "UnreadGrants"]

#: Seconds a grant may sit unread in a replica's mailbox before that replica counts as dead:
#: two of its grant loop's ``BLPOP`` waits (``upkeep.MAILBOX_WAIT``).
UNREAD_FOR = 1.0


@dataclass(frozen=True, slots=True)
class Silent:
    """A replica that left grants unread, and the grants taken back from its mailbox."""

    replica: str
    #: Model -> ``(backend, lease id)`` of each grant taken back.
    grants: dict[str, list[tuple[str, str]]]
    #: Seconds the grant found unread had been in the mailbox.
    unread_for: float


class UnreadGrants:
    def __init__(self, store: AdmissionStore, *, unread_for: float = UNREAD_FOR) -> None:
        self.store = store
        self.unread_for = unread_for
        #: Per replica, the grants posted to it not yet known read: (posted at, model, grant).
        self._posted: dict[str, deque[tuple[float, str, Grant]]] = defaultdict(deque)

    def __bool__(self) -> bool:
        return bool(self._posted)

    def posted(self, model: str, grants: list[Grant]) -> None:
        now = time.monotonic()
        for grant in grants:
            self._posted[grant.replica].append((now, model, grant))

    async def silent(self) -> list[Silent]:
        """The replicas that left a grant unread for :attr:`unread_for`, their grants taken
        back. One look per replica: at its latest grant old enough to have been read (read
        means every older one was too, a mailbox being a queue)."""
        found: list[Silent] = []
        now = time.monotonic()
        for replica, posted in list(self._posted.items()):
            due = None
            while posted and now - posted[0][0] >= self.unread_for:
                due = posted.popleft()
            if not posted:
                del self._posted[replica]
            if due is None:
                continue
            posted_at, model, grant = due
            taken = await self.store.take_unread(model, grant)
            if not taken:
                continue
            self._posted.pop(replica, None)  # its later grants were taken too
            grants: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for taken_model, waiter, backend in taken:
                grants[taken_model].append((backend, waiter))
            found.append(Silent(replica, dict(grants), now - posted_at))
        return found
