"""FolderCache: bulk reads, the pending overlay, and rebuilding an old file."""

import os
import shutil
import sqlite3
import tempfile

from twisted.trial import unittest

from mailsrv.store.cache import CACHE_FILE, FolderCache


class CacheTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.cache = FolderCache(self.dir)
        self.cache.set_uidvalidity(7)

    def tearDown(self):
        self.cache.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_get_many_dense_sparse_and_pending(self):
        for u in range(1, 2001):
            self.cache.set(u, "envelope", b"E%d" % u)
            self.cache.set(u, "header", b"H%d" % u)
        self.cache.flush()
        self.assertEqual(self.cache.get_many(list(range(1, 2001)), "envelope"),
                         {u: b"E%d" % u for u in range(1, 2001)})
        sparse = [5, 900, 1999, 4000]
        self.assertEqual(self.cache.get_many(sparse, "header"), {5: b"H5", 900: b"H900", 1999: b"H1999"})
        holes = list(range(10, 30, 2))
        self.assertEqual(self.cache.get_many(holes, "envelope"), {u: b"E%d" % u for u in holes})
        self.cache.set(900, "header", b"new")  # not yet written: the pending value wins
        self.assertEqual(self.cache.get_many(sparse, "header")[900], b"new")
        self.assertEqual(self.cache.get_many([], "header"), {})
        self.cache.forget([5, 900])
        self.assertEqual(self.cache.get_many(sparse, "header"), {1999: b"H1999"})
        self.assertIsNone(self.cache.get(5, "envelope"))
        self.assertEqual(self.cache.get(6, "envelope"), b"E6")

    def test_old_layout_is_rebuilt(self):
        self.cache.close()
        path = os.path.join(self.dir, CACHE_FILE)
        if os.path.exists(path):
            os.unlink(path)
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)")
        db.execute("INSERT INTO meta VALUES ('uidvalidity', '7')")
        db.execute("CREATE TABLE cache (uid INTEGER, kind TEXT, value BLOB, PRIMARY KEY (uid, kind)) WITHOUT ROWID")
        db.execute("INSERT INTO cache VALUES (1, 'envelope', x'00')")
        db.commit()
        db.close()
        cache = FolderCache(self.dir)
        cache.set_uidvalidity(7)
        self.assertIsNone(cache.get(1, "envelope"))
        cache.set(1, "envelope", b"E")
        cache.close()
        self.assertEqual(cache.get_many([1], "envelope"), {1: b"E"})
        cache.close()

    def test_search_texts_are_kept_in_memory_and_stay_exact(self):
        from mailsrv.store import cache as cache_mod

        for u in range(1, 101):
            self.cache.set(u, "hs:subject", b"\ns%d" % u)
        self.cache.flush()
        self.cache.set(101, "hs:subject", b"\npending")
        self.assertEqual(self.cache.get_many([1, 50, 101, 102], "hs:subject"),
                         {1: b"\ns1", 50: b"\ns50", 101: b"\npending"})
        db = self.cache._db
        self.cache._db = None  # from memory now: no query would work
        self.cache._broken = True
        try:
            self.assertEqual(self.cache.get_many(list(range(1, 4)), "hs:subject"), {1: b"\ns1", 2: b"\ns2", 3: b"\ns3"})
            self.cache.set(102, "hs:subject", b"\nlate")
            self.cache.forget([1])
            self.assertEqual(self.cache.get_many([1, 102], "hs:subject"), {102: b"\nlate"})
        finally:
            self.cache._db, self.cache._broken = db, False
        self.patch(cache_mod, "HOT_BYTES", 10)  # too big for memory: read from the file as before
        self.cache._hot.clear()
        self.cache._hot_bytes = 0
        self.assertEqual(self.cache.get_many([2], "hs:subject"), {2: b"\ns2"})
        self.assertEqual(self.cache._hot, {})
