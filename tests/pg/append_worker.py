"""A second process for the concurrency and crash tests: appends messages
to one folder through its own PgStore and prints ``ACK <uid> <sha256>``
for each append the store acknowledged (flushed at once, so a parent that
kills this process knows exactly what was acknowledged).

    python -m tests.pg.append_worker DSN USER COUNT [PARALLEL]
"""

from __future__ import annotations

import hashlib
import os
import sys

from twisted.internet import defer, task

from mailsrv.store.crlf import to_crlf
from mailsrv.store.pg.store import PgStore


def body(tag: str, i: int) -> bytes:
    pad = os.urandom(16).hex().encode() * (1 + i % 50)
    return b"From: worker@example.org\r\nSubject: %s %d\r\n\r\n%s\r\n" % (tag.encode(), i, pad)


async def main(reactor, dsn: str, user: str, count: int, parallel: int) -> None:
    store = PgStore(dsn, reactor, listen=False)
    account = await store.open_account(user)
    folder = await account.open_folder("INBOX")
    tag = f"p{os.getpid()}"

    async def one(i: int) -> None:
        data = body(tag, i)
        uid = await folder.append(data)
        sys.stdout.write(f"ACK {uid} {hashlib.sha256(to_crlf(data)).hexdigest()}\n")
        sys.stdout.flush()

    async def lane(first: int) -> None:
        for i in range(first, count, parallel):
            await one(i)

    await defer.gatherResults([defer.ensureDeferred(lane(k)) for k in range(parallel)])
    await store.close()


if __name__ == "__main__":
    dsn, user, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    parallel = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    task.react(lambda r: defer.ensureDeferred(main(r, dsn, user, count, parallel)))
