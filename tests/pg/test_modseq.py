"""Mod-sequences, the expunge record, the change index and the flag sets of
the PostgreSQL store across nodes: every test runs two PgStores on one
database (two processes' views, each with its own pool and change feed),
and checks what each node answers from memory against what the database
holds."""

from __future__ import annotations

from typing import Any

import psycopg
from twisted.internet import defer

from mailsrv.store.pg import modseq as pgmodseq
from mailsrv.store.pg import schema
from mailsrv.store.pg.store import PgStore

from .helpers import PgStoreCase, Recorder, until

MSG = b"From: a@example.com\nSubject: hi\n\nhello\n"


def brute_changed(folder: Any, since: int) -> list[int]:
    return [m.uid for m in folder.messages() if m.modseq > since]


class TwoNodes(PgStoreCase):
    """Node A (``self.store``) and node B (``self.other``), both with
    alice's INBOX open."""

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        super().setUp()
        self.other = self.fresh_store()
        self.a = yield (yield self.store.open_account("alice")).open_folder("INBOX")
        self.b = yield (yield self.other.open_account("alice")).open_folder("INBOX")
        self.rec_a, self.rec_b = Recorder(), Recorder()
        self.a.add_listener(self.rec_a)
        self.b.add_listener(self.rec_b)

    def db_rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as c:
            return c.execute(sql, args).fetchall()

    def in_step(self) -> defer.Deferred:
        return until(lambda: self.a.highestmodseq == self.b.highestmodseq)

    def assert_same_answers(self, since_values: range) -> None:
        """Both nodes answer every question as the database says."""
        rows = self.db_rows("SELECT uid, modseq FROM messages WHERE folder_id = %s ORDER BY uid", self.a.id)
        gone = self.db_rows("SELECT uid, modseq FROM expunged WHERE folder_id = %s", self.a.id)
        for f in (self.a, self.b):
            assert [(m.uid, m.modseq) for m in f.messages()] == rows
            for since in since_values:
                assert f.changed_since(since) == brute_changed(f, since) == [u for u, m in rows if m > since]
                if since >= f.vanished_floor:
                    assert f.vanished_since(since) == sorted(u for u, m in gone if m > since)
            for flag in ("\\Seen", "\\Flagged", "\\Deleted", "$Work", "$work"):
                want = {m.uid for m in f.messages() if flag.lower() in {x.lower() for x in m.flags}}
                assert f.uids_with_flag(flag) == want, (flag, f)


class ModseqAcrossNodes(TwoNodes):
    @defer.inlineCallbacks
    def test_every_change_on_either_node_takes_a_new_modseq(self) -> Any:
        seen = [self.a.highestmodseq]
        uids = []
        for i in range(6):
            node = (self.a, self.b)[i % 2]
            uids.append((yield node.append(MSG, ["$Work"] if i % 3 == 0 else [])))
            assert node.highestmodseq > seen[-1]
            seen.append(node.highestmodseq)
        yield self.in_step()
        self.assert_same_answers(range(0, self.a.highestmodseq + 1))
        # one flag change per UID, half from each node, all at once: each is its own transaction
        # and must get its own mod-sequence, whichever node ran it
        ds = [(self.a, self.b)[i % 2].store_flags([u], ["\\Seen"], "+") for i, u in enumerate(uids)]
        yield defer.gatherResults(ds)
        yield self.in_step()
        mods = [self.a.get(u).modseq for u in uids]
        assert len(set(mods)) == len(uids) and min(mods) > seen[-1]
        assert self.a.highestmodseq == max(mods)
        yield self.b.expunge(uids[:2])
        yield self.b.touch_modseq([uids[2]])
        yield self.a.store_flags([uids[3]], ["$Work"], "-")
        yield self.in_step()
        assert self.a.vanished_since(seen[-1]) == uids[:2] == self.b.vanished_since(seen[-1])
        assert self.a.get(uids[2]).modseq > max(mods) and self.a.get(uids[2]).flags == {"\\Seen"}
        self.assert_same_answers(range(0, self.a.highestmodseq + 1))
        assert self.db_rows("SELECT highestmodseq FROM folders WHERE id = %s", self.a.id) == [(self.a.highestmodseq,)]

    @defer.inlineCallbacks
    def test_unchanged_since_counts_a_change_this_node_has_not_heard_of(self) -> Any:
        x = yield self.a.append(MSG)
        yield self.in_step()
        seen = self.a.get(x).modseq
        self.a.notified = lambda modseq: None  # node A misses the push for a while
        yield self.b.store_flags([x], ["\\Flagged"], "+")
        assert self.a.get(x).modseq == seen  # A's memory is behind ...
        changed, modified = yield self.a.store_flags_unchanged_since([x], ["\\Seen"], "+", seen)
        assert (changed, modified) == ([], [x])  # ... but the test ran against the database
        assert self.db_rows("SELECT flags FROM messages WHERE folder_id = %s AND uid = %s", self.a.id, x) == [(2,)]
        assert self.a.get(x).flags == {"\\Flagged"}  # and A caught up with the feed it got back
        del self.a.notified
        changed, modified = yield self.a.store_flags_unchanged_since([x], ["\\Seen"], "+", self.a.get(x).modseq)
        assert (changed, modified) == ([x], [])

    @defer.inlineCallbacks
    def test_store_and_expunge_go_by_the_database_not_by_what_this_node_heard(self) -> Any:
        x = yield self.a.append(MSG, ["\\Seen"])
        y = yield self.a.append(MSG)
        yield self.in_step()
        self.a.notified = lambda modseq: None  # A misses B's changes for a while
        yield self.b.store_flags([x], ["\\Seen"], "-")
        yield self.b.store_flags([y], ["\\Deleted"], "+")
        assert "\\Seen" in self.a.get(x).flags and "\\Deleted" not in self.a.get(y).flags  # A is behind
        changed = yield self.a.store_flags([x], ["\\Seen"], "+")  # a no-op as far as A knows
        assert changed == [x] and "\\Seen" in self.a.get(x).flags
        gone = yield self.a.expunge()  # nothing flagged as far as A knows
        assert gone == [y] and self.a.uids() == [x]
        # told what changed from A's point of view: x had \\Seen before and after
        assert self.rec_a.take() == [("added", [x]), ("added", [y]), ("flags", [y]), ("expunged", [y])]
        del self.a.notified
        yield self.in_step()
        self.assert_same_answers(range(0, self.a.highestmodseq + 1))
        assert (yield self.a.expunge()) == []  # nothing flagged: no change, no new mod-sequence
        assert self.db_rows("SELECT highestmodseq FROM folders WHERE id = %s", self.a.id) == [(self.a.highestmodseq,)]

    @defer.inlineCallbacks
    def test_unchanged_since_from_both_nodes_at_once_lets_one_win(self) -> Any:
        uids = []
        for _ in range(5):
            uids.append((yield self.a.append(MSG)))
        yield self.in_step()
        m = self.a.highestmodseq
        da = self.a.store_flags_unchanged_since(uids, ["$A"], "+", m)
        db = self.b.store_flags_unchanged_since(uids, ["$B"], "+", m)
        (ca, ma), (cb, mb) = yield defer.gatherResults([da, db])
        assert sorted([ca, cb]) == [[], uids] and sorted([ma, mb]) == [[], uids]
        yield self.in_step()
        assert {frozenset(self.b.get(u).flags) for u in uids} in ({frozenset({"$A"})}, {frozenset({"$B"})})


class ExpungeRecord(TwoNodes):
    def setUp(self) -> Any:
        self.patch(pgmodseq, "KEEP", 20)
        self.patch(pgmodseq, "TRIM_BATCH", 5)
        return super().setUp()

    def record(self) -> list[tuple[int, int]]:
        return self.db_rows("SELECT uid, modseq FROM expunged WHERE folder_id = %s ORDER BY modseq, uid", self.a.id)

    @defer.inlineCallbacks
    def test_trimmed_in_bounded_batches_and_exact_above_the_floor(self) -> Any:
        uids = []
        for _ in range(60):
            uids.append((yield self.a.append(MSG)))
        groups = [uids[:30]] + [[u] for u in uids[30:56]]  # one big expunge, then one at a time
        model: list[tuple[int, int]] = []  # the record as the rule says: (uid, modseq), oldest first
        floor, marks = 1, {}
        for i, group in enumerate(groups):
            yield self.in_step()
            marks[group[0]] = self.a.highestmodseq
            yield (self.a, self.b)[i % 2].expunge(group)
            model.extend((u, marks[group[0]] + 1) for u in group)
            excess = len(model) - 20
            if excess > 2:  # a tenth over KEEP: trim, at most TRIM_BATCH rows at a time
                floor = model[min(excess, 5) - 1][1]
                del model[:min(excess, 5)]
            assert self.record() == model
            assert self.db_rows("SELECT vanished_floor, expunged_rows FROM folders WHERE id = %s",
                                self.a.id) == [(floor, len(model))]
        yield self.in_step()
        assert self.a.vanished_floor == self.b.vanished_floor == floor > marks[uids[0]]
        gone = uids[:56]
        for first, since in marks.items():
            for f in (self.a, self.b):
                got = f.vanished_since(since)
                if since >= floor:
                    assert got == [v for v in gone if v >= first]
                else:  # trimmed: every UID not in the folder, never a present one
                    assert set(got) >= {v for v in gone if v >= first} and not set(got) & set(f.uids())
        self.assert_same_answers(range(floor, self.a.highestmodseq + 1))

    @defer.inlineCallbacks
    def test_a_node_that_missed_more_than_the_record_reloads_the_folder(self) -> Any:
        uids = []
        for _ in range(40):
            uids.append((yield self.a.append(MSG, ["\\Seen"])))
        yield self.in_step()
        assert self.b.uids_with_flag("\\Seen") == set(uids)
        self.b.notified = lambda modseq: None  # B hears nothing while A expunges
        self.rec_b.take()
        for u in uids[:30]:
            yield self.a.expunge([u])
        yield self.a.store_flags(uids[30:32], ["\\Seen"], "-")
        assert self.b.synced < self.a.vanished_floor  # what B missed reaches below the record
        yield self.b.refresh()
        assert self.rec_b.take() == [("expunged", uids[:30]), ("flags", uids[30:32])]
        assert self.b.uids() == uids[30:] and self.b.vanished_floor == self.a.vanished_floor
        assert self.b.uids_with_flag("\\Seen") == set(uids[32:])
        self.assert_same_answers(range(self.a.vanished_floor, self.a.highestmodseq + 1))


class Upgrade(PgStoreCase):
    @defer.inlineCallbacks
    def test_a_database_from_step_4_upgrades_in_place(self) -> Any:
        name = "upgrade_step4_test"
        self.cluster.drop_database(name)
        self.cluster.create_database(name)
        self.addCleanup(self.cluster.drop_database, name)
        dsn = self.cluster.dsn_for(name)
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, description text NOT NULL, "
                      "applied timestamptz NOT NULL DEFAULT now())")
            for version, description, sql in schema.MIGRATIONS[:4]:
                c.execute(sql)
                c.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, description))
            aid = c.execute("INSERT INTO accounts (name) VALUES ('bob') RETURNING id").fetchone()[0]
            fid = c.execute("INSERT INTO folders (account_id, name, uidnext, highestmodseq) "
                            "VALUES (%s, 'INBOX', 10, 12) RETURNING id", (aid,)).fetchone()[0]
            c.execute("INSERT INTO expunged SELECT %s, u, u + 2 FROM generate_series(1, 9) u", (fid,))
            assert schema.migrate(c) == [5]
            assert c.execute("SELECT vanished_floor, expunged_rows FROM folders WHERE id = %s",
                             (fid,)).fetchone() == (1, 9)
        s = PgStore(dsn)
        self.addCleanup(s.close)
        inbox = yield (yield s.open_account("bob")).open_folder("INBOX")
        assert inbox.highestmodseq == 12 and inbox.vanished_floor == 1
        assert inbox.vanished_since(7) == [6, 7, 8, 9] and inbox.vanished_since(0) == list(range(1, 10))
        uid = yield inbox.append(MSG)
        yield inbox.expunge([uid])
        assert inbox.vanished_since(12) == [uid] and inbox.highestmodseq == 14
