"""Bodies and derived values in the database: one copy per content,
partial reads that leave the rest of a body in the database, derived
values shared by every copy and every process."""

from __future__ import annotations

import io

import psycopg
from twisted.internet import defer

from mailsrv.store.pg import blobs as blobmod
from mailsrv.store.pg import schema
from mailsrv.store.pg.folder import HEAD_BYTES

from .helpers import PgStoreCase

HEADER = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: big one\r\n\r\n"


def big_body(size: int) -> bytes:
    line = b"0123456789" * 7 + b"\r\n"
    return HEADER + line * ((size - len(HEADER)) // len(line))


class BodyTests(PgStoreCase):
    def _count(self, sql: str, *args) -> int:
        with psycopg.connect(self.dsn) as c:
            return c.execute(sql, args).fetchone()[0]

    @defer.inlineCallbacks
    def test_one_copy_for_many_recipients_and_lf_crlf_alike(self):
        msg = b"Subject: to everyone\n\nsame words for all\n"
        for i in range(10):
            a = yield self.store.open_account(f"r{i}")
            yield a.deliver("INBOX", msg if i % 2 else msg.replace(b"\n", b"\r\n"))
        self.assertEqual(self._count("SELECT count(*) FROM messages"), 10)
        self.assertEqual(self._count("SELECT count(*) FROM blobs"), 1)
        self.assertEqual(self._count("SELECT size FROM blobs"), len(msg.replace(b"\n", b"\r\n")))
        # the blob goes when its last message goes
        for i in range(10):
            f = yield self.store.account(f"r{i}").open_folder("INBOX")
            yield f.expunge(f.uids())
            yield self.store.db.run(lambda c: None)
        yield self._collected()
        self.assertEqual(self._count("SELECT count(*) FROM blobs"), 0)

    @defer.inlineCallbacks
    def _collected(self):
        from .helpers import until

        yield until(lambda: self._count("SELECT count(*) FROM blobs") == 0, timeout=5, step=0.02)

    @defer.inlineCallbacks
    def test_large_body_is_copied_in_and_deduplicated(self):
        body = big_body(3 << 20)
        a = yield self.store.open_account("big")
        inbox = yield a.open_folder("INBOX")
        u1 = yield inbox.append(io.BytesIO(body))
        u2 = yield inbox.append(io.BytesIO(body))
        self.assertEqual(self._count("SELECT count(*) FROM blobs"), 1)
        self.assertEqual(self._count("SELECT octet_length(data) FROM blobs"), len(body))
        self.assertEqual(inbox.get(u1).size, inbox.get(u2).size)

    @defer.inlineCallbacks
    def test_header_prefetch_reads_only_the_start(self):
        body = big_body(4 << 20)
        a = yield self.store.open_account("hdr")
        inbox = yield a.open_folder("INBOX")
        uid = yield inbox.append(io.BytesIO(body))
        other = self.fresh_store()
        f = yield other.account("hdr").open_folder("INBOX")
        blob = f.get(uid).blob
        yield f.prefetch([uid], kinds=["header"], body="header")
        self.assertEqual(len(other.bodies.prefix(blob)), HEAD_BYTES)
        self.assertFalse(other.bodies.has_body(blob))
        fh = f.open_message(uid)
        self.assertEqual(fh.read(len(HEADER)), HEADER)  # served from the prefix: no query
        self.assertEqual(other.stats["blocking"], 0)
        # the rest, if a caller reads on without prefetching, comes in slices (counted: it blocks)
        fh.seek(len(body) - 10)
        self.assertEqual(fh.read(), body[-10:])
        self.assertEqual(other.stats["blocking"], 1)
        fh.close()
        yield f.prefetch([uid], body="full")
        with f.open_message(uid) as whole:
            self.assertEqual(whole.read(), body)

    @defer.inlineCallbacks
    def test_derived_values_shared_by_copies_and_processes(self):
        a = yield self.store.open_account("vals")
        inbox = yield a.open_folder("INBOX")
        trash = yield a.open_folder("Trash")
        uid = yield inbox.append(b"Subject: v\r\n\r\nx\r\n")
        inbox.set_cached(uid, "envelope", b"(ENVELOPE)")
        [(_, copied)] = yield inbox.copy_to([uid], trash)
        self.assertEqual(trash.get_cached(copied, "envelope"), b"(ENVELOPE)")
        yield self.store.flush_values()
        other = self.fresh_store()
        f = yield other.account("vals").open_folder("Trash")
        self.assertIsNone(f.get_cached(copied, "envelope"))  # not fetched yet: a miss, never a wait
        yield f.prefetch([copied], kinds=["envelope", "bodystructure"], body="full")
        self.assertEqual(f.get_cached_many([copied, 999], "envelope"), {copied: b"(ENVELOPE)"})
        self.assertTrue(other.bodies.has_body(f.get(copied).blob))  # bodystructure missing: body fetched
        self.assertEqual(other.stats["blocking"], 0)

    def test_spool_in_memory_and_on_disk(self):
        small = blobmod.spool(io.BytesIO(b"a\nb\n"))
        self.assertEqual((small.data, small.size), (b"a\r\nb\r\n", 6))
        big = blobmod.spool(io.BytesIO(b"x\n" * 100), inline_max=50)
        self.assertIsNone(big.data)
        with open(big.path, "rb") as f:
            self.assertEqual(f.read(), b"x\r\n" * 100)
        self.assertEqual(big.sha256, blobmod.spool(b"x\r\n" * 100).sha256)
        big.discard()


class SchemaTests(PgStoreCase):
    def test_versions_recorded_and_migrate_is_idempotent(self):
        with psycopg.connect(self.dsn, autocommit=True) as c:
            self.assertEqual(schema.current_version(c), schema.LATEST)
            self.assertEqual(schema.migrate(c), [])
            rows = c.execute("SELECT version, description FROM schema_migrations ORDER BY version").fetchall()
        self.assertEqual([r[0] for r in rows], [m[0] for m in schema.MIGRATIONS])

    def test_empty_database_is_created_and_newer_one_refused(self):
        from tests.pgfixture import TEMPLATE

        name = "empty_schema_test"
        self.cluster.drop_database(name)
        self.cluster.create_database(name)
        self.addCleanup(self.cluster.drop_database, name)
        with psycopg.connect(self.cluster.dsn_for(name), autocommit=True) as c:
            self.assertEqual(schema.current_version(c), 0)
            self.assertEqual(schema.migrate(c), [m[0] for m in schema.MIGRATIONS])
            c.execute("INSERT INTO schema_migrations (version, description) VALUES (%s, 'from the future')",
                      (schema.LATEST + 1,))
            self.assertRaises(RuntimeError, schema.migrate, c)
        self.assertNotEqual(name, TEMPLATE)
