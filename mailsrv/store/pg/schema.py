"""The database schema, versioned: ``schema_migrations`` records each step
applied, and :func:`migrate` applies the missing ones in order, in one
transaction each, under an advisory lock so that N workers starting at once
do not race.  A step is never edited once released; changes are new steps.

Tables (one row per ...):

- ``messages.saved`` (step 4): when the message was saved into its folder
  (RFC 8514 SAVEDATE; rows from before it: NULL, the internal date stands in).
- ``folders.vanished_floor``, ``folders.expunged_rows`` (step 5): the
  expunge record is trimmed (:mod:`.modseq`): ``expunged`` is exact for
  every mod-sequence at or above the floor, and ``expunged_rows`` counts
  its rows so that an expunge knows when to trim without a count.  A
  database from before it had never trimmed: floor 1, rows counted.
  ``messages_deleted``: the \\Deleted messages of a folder, by index.
  ``folder_values``: a folder's folder-wide derived values (the packed
  SORT/THREAD columns, ``IFolder.get_folder_cached``), read with the
  folder, written with the derived values' batching; ``written`` keeps a
  late write of an older value from replacing a newer one.
- ``users``: login name and ``{SCHEME}hash`` (the passwd file's schemes);
  (step 3) ``fields``: the passwd file's extra fields (``userdb_quota_rule``).
- ``accounts``: a mailbox owner (created on first use, like a Maildir).
- ``folders``: a mailbox: IMAP name (``/`` hierarchy), special-use,
  UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, the first UID still \\Recent, the
  keywords defined in it.  The row is the folder's lock: every change to
  its messages first bumps ``highestmodseq`` (``UPDATE ... RETURNING``), so
  writers to one folder queue on that row whichever node they run on, UIDs
  are handed out under it and never twice.
- ``subscriptions``: IMAP subscriptions (names need not exist).
- ``blobs``: message bodies, deduplicated by SHA-256 (see :mod:`.blobs`).
- ``messages``: UID, the body's blob, system flags (bit mask), keywords,
  internal date, RFC 822 size, per-message mod-sequence, stored POP3 UIDL.
- ``expunged``: (UID, mod-sequence) of every removed message, for QRESYNC
  ``VANISHED`` and for other nodes' sessions to learn of expunges.
- ``cache``: derived values (ENVELOPE, BODYSTRUCTURE, header fields, search
  text) keyed by blob: they depend on the message bytes only, so one value
  serves every copy of a message, in every folder and account.
- (step 2) ``folders.storage``/``messages``: the folder's RFC 822 octets and
  message count, kept by every write (quota usage is their sum, never a
  scan); ``folders.acl``: the RFC 4314 ACL in Dovecot's ``dovecot-acl``
  form; ``shares``: who shares with whom, from the ACLs; ``private_seen``:
  a user's own \\Seen in a public mailbox.

Every committed change of a folder sends ``NOTIFY mailsrv, '<folder id>:
<highestmodseq>'`` (a trigger on ``folders``), every change of an
account's folder list, ACLs or subscriptions ``'a<account id>'``, and of
the shares ``'s'``: the push that reaches live objects in every process
(:mod:`.notify`).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

log = Logger(namespace="mailsrv.store.pg")

CHANNEL = "mailsrv"
# pg_advisory_xact_lock key that serialises schema migrations.
MIGRATION_LOCK = 0x6D61696C73727601

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial schema", """
CREATE TABLE users (
    name text PRIMARY KEY,
    password text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    created timestamptz NOT NULL DEFAULT now()
);

-- UIDVALIDITY values: unique over the whole database and increasing, so a
-- folder deleted and created again never repeats one.
CREATE SEQUENCE uidvalidity_seq MINVALUE 1 MAXVALUE 4294967295;
SELECT setval('uidvalidity_seq', extract(epoch FROM now())::bigint);

CREATE TABLE folders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    name text NOT NULL,
    special_use text,
    uidvalidity bigint NOT NULL DEFAULT nextval('uidvalidity_seq'),
    uidnext bigint NOT NULL DEFAULT 1 CHECK (uidnext >= 1 AND uidnext <= 4294967296),
    highestmodseq bigint NOT NULL DEFAULT 1,
    first_recent_uid bigint NOT NULL DEFAULT 1,
    keywords text[] NOT NULL DEFAULT '{}',
    UNIQUE (account_id, name)
);

CREATE TABLE subscriptions (
    account_id bigint NOT NULL REFERENCES accounts ON DELETE CASCADE,
    name text NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE blobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256 bytea NOT NULL UNIQUE,
    size bigint NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    data bytea NOT NULL
);
ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE messages (
    folder_id bigint NOT NULL REFERENCES folders ON DELETE CASCADE,
    uid bigint NOT NULL,
    blob_id bigint NOT NULL REFERENCES blobs,
    flags smallint NOT NULL DEFAULT 0,
    keywords text[] NOT NULL DEFAULT '{}',
    internaldate double precision NOT NULL,
    size bigint NOT NULL,
    modseq bigint NOT NULL,
    pop3_uidl text,
    PRIMARY KEY (folder_id, uid)
);
CREATE INDEX messages_modseq ON messages (folder_id, modseq);
CREATE INDEX messages_blob ON messages (blob_id);

CREATE TABLE expunged (
    folder_id bigint NOT NULL REFERENCES folders ON DELETE CASCADE,
    uid bigint NOT NULL,
    modseq bigint NOT NULL,
    PRIMARY KEY (folder_id, uid)
);
CREATE INDEX expunged_modseq ON expunged (folder_id, modseq);

CREATE TABLE cache (
    blob_id bigint NOT NULL REFERENCES blobs ON DELETE CASCADE,
    kind text NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (blob_id, kind)
);

CREATE FUNCTION mailsrv_folder_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.highestmodseq <> OLD.highestmodseq THEN
        PERFORM pg_notify('mailsrv', NEW.id::text || ':' || NEW.highestmodseq::text);
    END IF;
    IF TG_OP = 'INSERT' OR TG_OP = 'DELETE' OR NEW.name <> OLD.name
            OR NEW.special_use IS DISTINCT FROM OLD.special_use THEN
        PERFORM pg_notify('mailsrv', 'a' || COALESCE(NEW.account_id, OLD.account_id)::text);
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('mailsrv', OLD.id::text || ':-1');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER folders_changed AFTER INSERT OR UPDATE OR DELETE ON folders
    FOR EACH ROW EXECUTE FUNCTION mailsrv_folder_changed();

CREATE FUNCTION mailsrv_subscriptions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mailsrv', 'a' || COALESCE(NEW.account_id, OLD.account_id)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER subscriptions_changed AFTER INSERT OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION mailsrv_subscriptions_changed();
"""),
    (2, "quota counters, ACLs, shares, private \\Seen", """
ALTER TABLE folders ADD COLUMN storage bigint NOT NULL DEFAULT 0;
ALTER TABLE folders ADD COLUMN messages bigint NOT NULL DEFAULT 0;
UPDATE folders f SET storage = s.octets, messages = s.n
    FROM (SELECT folder_id, sum(size) AS octets, count(*) AS n FROM messages GROUP BY folder_id) s
    WHERE s.folder_id = f.id;
ALTER TABLE folders ADD COLUMN acl text;

-- who shares a folder with whom ('*': anyone), kept from the folders' ACLs
CREATE TABLE shares (
    owner text NOT NULL,
    grantee text NOT NULL,
    PRIMARY KEY (owner, grantee)
);
CREATE INDEX shares_grantee ON shares (grantee);

-- a user's own \\Seen in a public mailbox (Dovecot's private index)
CREATE TABLE private_seen (
    user_name text NOT NULL,
    folder_id bigint NOT NULL REFERENCES folders ON DELETE CASCADE,
    uidvalidity bigint NOT NULL,
    uids bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (user_name, folder_id)
);

CREATE OR REPLACE FUNCTION mailsrv_folder_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.highestmodseq <> OLD.highestmodseq THEN
        PERFORM pg_notify('mailsrv', NEW.id::text || ':' || NEW.highestmodseq::text);
    END IF;
    IF TG_OP = 'INSERT' OR TG_OP = 'DELETE' OR NEW.name <> OLD.name
            OR NEW.special_use IS DISTINCT FROM OLD.special_use OR NEW.acl IS DISTINCT FROM OLD.acl THEN
        PERFORM pg_notify('mailsrv', 'a' || COALESCE(NEW.account_id, OLD.account_id)::text);
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('mailsrv', OLD.id::text || ':-1');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION mailsrv_shares_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mailsrv', 's');
    RETURN NULL;
END $$;
CREATE TRIGGER shares_changed AFTER INSERT OR DELETE ON shares
    FOR EACH STATEMENT EXECUTE FUNCTION mailsrv_shares_changed();
"""),
    (3, "users' extra fields", """
ALTER TABLE users ADD COLUMN fields jsonb NOT NULL DEFAULT '{}';
"""),
    (4, "save dates", """
ALTER TABLE messages ADD COLUMN saved double precision;
"""),
    (5, "expunge record: floor and size", """
ALTER TABLE folders ADD COLUMN vanished_floor bigint NOT NULL DEFAULT 1;
ALTER TABLE folders ADD COLUMN expunged_rows bigint NOT NULL DEFAULT 0;
UPDATE folders f SET expunged_rows = e.n
    FROM (SELECT folder_id, count(*) AS n FROM expunged GROUP BY folder_id) e
    WHERE e.folder_id = f.id;
-- EXPUNGE/CLOSE ask the database which messages are \\Deleted: a handful in a big folder
CREATE INDEX messages_deleted ON messages (folder_id) WHERE (flags & 4) <> 0;

-- values derived from many messages of a folder at once (SORT/THREAD columns): a cache
CREATE TABLE folder_values (
    folder_id bigint NOT NULL REFERENCES folders ON DELETE CASCADE,
    kind text NOT NULL,
    value bytea NOT NULL,
    written double precision NOT NULL,
    PRIMARY KEY (folder_id, kind)
);
ALTER TABLE folder_values ALTER COLUMN value SET STORAGE EXTERNAL;
"""),
]

LATEST = MIGRATIONS[-1][0]


def current_version(conn: Any) -> int:
    """The schema version of the database (0: empty)."""
    row = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if row[0] is None:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0])


def migrate(conn: Any) -> list[int]:
    """Bring the schema up to date (blocking; a psycopg connection in
    autocommit mode).  Returns the versions applied.  Refuses a database
    newer than this code knows."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                     "version integer PRIMARY KEY, description text NOT NULL, "
                     "applied timestamptz NOT NULL DEFAULT now())")
        have = current_version(conn)
        if have > LATEST:
            raise RuntimeError(f"database schema version {have} is newer than this mailsrv ({LATEST})")
        for version, description, sql in MIGRATIONS:
            if version <= have:
                continue
            with conn.transaction():
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                             (version, description))
            applied.append(version)
            log.info("database schema: applied step {v} ({d})", v=version, d=description)
    return applied
