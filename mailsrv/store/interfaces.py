"""The contract between the protocols (IMAP, POP3, LMTP) and the mail store.

Protocols never touch files; they talk to these interfaces.  Two backends
implement them: the Maildir store (mailsrv.store) and the PostgreSQL store
(mailsrv.store.pg); protocols never know which one they talk to.

Conventions:

- Folder names are Python ``str`` in IMAP form: ``"INBOX"``, ``"Sent"``,
  ``"Lists/python"`` (``/`` is the hierarchy delimiter).  The IMAP layer
  does modified UTF-7 on the wire; the store does its own on-disk encoding.
- Flags are IMAP flag strings: ``\\Seen``, ``\\Answered``, ``\\Flagged``,
  ``\\Deleted``, ``\\Draft``; keywords are plain atoms (``$Junk``).
  ``\\Recent`` is never stored: see :meth:`IFolder.claim_recent`.
- Sizes are RFC 822 sizes: the octet count of the message with CRLF line
  ends, which is what POP3 RETR and IMAP RFC822.SIZE send.
- Methods returning ``Deferred`` may do their disk work in a thread; their
  in-memory effects (new UIDs, flag changes, listener calls) always happen
  in the reactor thread, in order, before the Deferred fires.

The module is one piece on purpose: it is the whole contract a backend
implements, read top to bottom by whoever writes the next store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, BinaryIO

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

MessageSource = bytes | IO[bytes]
"""A message handed to the store: its bytes, or a binary file positioned at
its start (an APPEND literal spooled to disk, an LMTP spool)."""

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


class StoreError(Exception):
    """Base class of store errors; ``code`` is an RFC 5530 response code."""

    code = "SERVERBUG"


class NoSuchFolder(StoreError):
    code = "NONEXISTENT"


class FolderExists(StoreError):
    code = "ALREADYEXISTS"


class InvalidFolderName(StoreError):
    code = "CANNOT"


class FolderNotEmpty(StoreError):
    """A folder cannot go because of what it holds.  (DELETE of a folder
    with inferior folders is allowed: see :meth:`IAccount.delete_folder`.)"""

    code = "INUSE"


class MessageGone(StoreError):
    """The message was expunged (by another session or protocol)."""

    code = "EXPUNGEISSUED"


class TooBig(StoreError):
    code = "LIMIT"


class OverQuota(StoreError):
    """Storing this would take the owner of the target mailbox over a quota
    limit (RFC 9208): nothing was stored.  ``temporary`` is the operator's
    choice (``[quota] full_tempfail``) of whether a mail transport should
    retry later (LMTP 452 4.2.2, ``deliver`` exit 75) or bounce (552 5.2.2,
    exit 73)."""

    code = "OVERQUOTA"
    temporary = False


class NoPermission(StoreError):
    """The user lacks the right (RFC 4314) this operation needs."""

    code = "NOPERM"


@dataclass(slots=True)
class MessageInfo:
    """What the store knows of one message without opening it.  Slotted: a
    100,000-message folder holds 100,000 of these."""

    uid: int
    key: str  # Maildir base name (the part before ':2,'); stable for the message's life
    size: int  # RFC 822 size (CRLF line ends)
    internaldate: float  # seconds since the epoch (Maildir: file mtime)
    flags: frozenset = field(default_factory=frozenset)  # system flags and keywords
    modseq: int = 1  # the mod-sequence of the message's last change (RFC 7162): see IFolder.highestmodseq


class IFolderListener(Interface):
    """Told by a live folder of every change, from whichever session or
    process made it.  Called in the reactor thread.  An IMAP session queues
    these and reports them at the points RFC 3501/2180 allow."""

    def messages_added(folder: IFolder, uids: list) -> None:
        """New messages (APPEND, COPY/MOVE in, delivery, external new/)."""

    def flags_changed(folder: IFolder, uids: list) -> None:
        """Flags of these messages changed (read the new ones with get())."""

    def messages_expunged(folder: IFolder, uids: list) -> None:
        """These messages are gone for good."""


class IFolder(Interface):
    """One mailbox.  There is exactly one live object per folder in the
    process, shared by every session that has it open.

    Optional attribute ``instant_notice`` (bool, False when absent): True
    while changes made outside the process reach the listeners without
    anyone calling :meth:`refresh` (inotify, a database's notifications),
    so pollers such as IMAP IDLE may poll rarely, as a safety net."""

    name = Attribute("IMAP name, e.g. 'INBOX' or 'Lists/python'")
    uidvalidity = Attribute("int, never changes silently")
    uidnext = Attribute("int, the UID the next message will get")
    # -- CONDSTORE/QRESYNC (issue 9)
    highestmodseq = Attribute(
        """int >= 1: the mod-sequence of the folder's last change (RFC 7162).
        Every change to the folder - messages added (APPEND, COPY/MOVE in,
        deliveries, files another program put there), flags changed (by any
        session, POP3, or another program), messages expunged - takes a
        mod-sequence above every earlier one; one operation may give all it
        changes the same one.  Each message's ``MessageInfo.modseq`` is the
        mod-sequence of its own last change (arrival or flag change).  The
        value is persistent: it never goes backwards, across restarts,
        crashes, reindexing and changes made while the server was down; it
        may start again (at any value >= 1) only together with a new
        UIDVALIDITY.  A change is recorded before any listener hears of it
        or any reader can see it.""")
    vanished_floor = Attribute(
        """int: :meth:`vanished_since` is exact for every mod-sequence at or
        above it (the expunge record reaches back that far).""")
    rights = Attribute("str: the opener's RFC 4314 rights (issue 12); RIGHTS on the owner's own object")

    def messages() -> list:
        """All current messages as MessageInfo, ascending by UID.  The list
        is a snapshot (a new list object); callers may keep it."""

    def get(uid: int) -> MessageInfo | None:
        """The message with this UID, or None once expunged."""

    def open_message(uid: int) -> BinaryIO:
        """A binary file object on the stored bytes (LF or CRLF as stored).
        Raises MessageGone if the message was expunged.  Caller closes it."""

    def pop3_uidl(uid: int) -> str:
        """Dovecot-compatible POP3 UIDL: a stored 'P' uidlist extension if
        present, else '%08x%08x' % (uid, uidvalidity) (Dovecot 2.3's
        ``%08Xu%08Xv`` prints lowercase hex: see tests/fixtures)."""

    def refresh() -> Deferred:
        """Notice changes made outside this process (files dropped into new/,
        renamed or removed), assign UIDs, tell listeners.  Cheap when nothing
        changed (a stat of new/ and cur/).  Fires with None."""

    def append(source: MessageSource, flags: Iterable[str] = (), internaldate: float | None = None) -> Deferred:
        """Store one message crash-safely (tmp/, fsync, rename).  ``source``
        is bytes or a binary file object positioned at the start.  Fires with
        the new UID once the message is on disk and listed."""

    def store_flags(uids: Iterable[int], flags: Iterable[str], mode: str) -> Deferred:
        """mode is '+', '-' or '='.  Fires with the list of UIDs whose flags
        really changed (uids already expunged are skipped silently), once
        the change is durable and readable (``get``, listeners told); a
        backend may finish writing it out after that (the Maildir store
        renames the files in the background, before the folder's next
        operation, and redoes them after a crash)."""

    def expunge(uids: Iterable[int] | None = None) -> Deferred:
        """Remove messages for good.  ``None`` means every message flagged
        \\Deleted; otherwise exactly these UIDs (whatever their flags).
        Fires with the list of UIDs removed."""

    def copy_to(uids: Iterable[int], target: IFolder, move: bool = False) -> Deferred:
        """Copy messages with their flags (hard link where possible).  Fires
        with a list of (source_uid, new_uid) pairs, ascending by source uid.
        Quota (issue 12): the copies count against the quota of the
        target's owner and fail with OverQuota (nothing copied) beyond it;
        ``move=True`` says the caller expunges the sources right after (IMAP
        MOVE), so a copy within one owner's mailboxes is not checked (usage
        does not grow) - a MOVE within an account never fails for quota.
        Rights (issue 12): a ``target`` that is a user's handle on someone
        else's mailbox (it has ``unwrap()``, ``rights``, ``incoming()`` and
        ``copied_in()``: :class:`mailsrv.store.rightsfolder.RightsFolder`)
        needs ``i`` (NoPermission); each copy gets only
        ``target.incoming(source_flags)`` and the result goes through
        ``target.copied_in(pairs, {source_uid: source_flags})`` before the
        Deferred fires."""

    def claim_recent() -> set:
        """The UIDs that are \\Recent for the caller: messages that arrived
        since the last claim.  Each message is recent for one session only."""

    def peek_recent() -> set:
        """The UIDs still waiting to be claimed, without claiming them
        (EXAMINE and STATUS RECENT report them, RFC 3501 6.3.2/6.3.10)."""

    def add_listener(listener: IFolderListener) -> None:
        """Start telling ``listener`` of changes."""

    def remove_listener(listener: IFolderListener) -> None:
        """Stop telling ``listener``; the folder may be closed once no
        listener and no open handle remains."""

    def keywords() -> list:
        """Keywords in use in this folder (for FLAGS / PERMANENTFLAGS)."""

    def total_size() -> int:
        """Sum of RFC 822 sizes."""

    def get_cached(uid: int, kind: str) -> bytes | None:
        """A value cached for this message (e.g. kind 'envelope',
        'bodystructure', 'header'), or None.  The cache (a per-folder SQLite
        file) is rebuildable; it dies with the message."""

    def set_cached(uid: int, kind: str, value: bytes) -> None:
        """Remember a derived value for this message (cheap, batched writes)."""

    def get_cached_many(uids: Iterable[int], kind: str) -> dict:
        """``{uid: value}`` of one kind for many messages (those without a
        value, or expunged, are left out): what a FETCH over many messages
        reads in a few queries instead of one per message."""

    # -- flag sets (issue 10)

    def uids_with_flag(flag: str) -> set:
        """The UIDs of the messages that carry ``flag`` now (a system flag
        in its canonical spelling, or a keyword in any case), from an index
        kept up to date as flags change: flag searches are set arithmetic,
        not a look at every message.  Synchronous.  The set may be the
        store's own: the caller must not change it, and should not keep it
        across a change to the folder."""

    # -- CONDSTORE/QRESYNC (issue 9)

    def vanished_since(modseq: int) -> list:
        """UIDs (ascending) of the messages expunged with a mod-sequence
        above ``modseq``: what ``VANISHED (EARLIER)`` reports to a client
        that last synchronised at ``modseq`` (RFC 7162 3.2.5, 3.2.6).
        Synchronous, from memory.  Exact for ``modseq >= vanished_floor``;
        below it the record was trimmed and the answer is every UID below
        ``uidnext`` that is not in the folder - a superset, which RFC 7162
        3.2.5.2 allows (clients ignore UIDs they do not know).  Never
        includes a UID that is in the folder."""

    def changed_since(modseq: int) -> list:
        """UIDs (ascending) of the messages whose ``modseq`` is above
        ``modseq`` - added or changed since a client saw it: what ``FETCH
        (CHANGEDSINCE)`` and ``SELECT (QRESYNC)`` report.  Synchronous,
        from an index: the cost follows the number of changes, not the
        size of the folder."""

    def store_flags_unchanged_since(uids: Iterable[int], flags: Iterable[str], mode: str,
                                    unchangedsince: int) -> Deferred:
        """``store_flags`` with RFC 7162's UNCHANGEDSINCE: a message whose
        ``modseq`` is above ``unchangedsince`` is left alone and reported as
        modified; the others are changed as ``store_flags`` would (mode '+',
        '-' or '=').  Test and change are one atomic step: no other change
        to these messages comes between.  Expunged UIDs are skipped, in
        neither list.  Fires with ``(changed, modified)``: the UIDs whose
        flags really changed (each now at one new mod-sequence) and the
        UIDs left alone, both ascending."""

    # -- folder-wide derived values (SORT/THREAD, issue 9)
    def get_folder_cached(kind: str) -> bytes | None:
        """A value derived from many messages of the folder at once (e.g.
        kind 'col:sk:subj', every message's sort key packed in one value),
        or None.  Like the per-message cache it is rebuildable and dies
        with UIDVALIDITY; it is not told of new or expunged messages, so it
        may describe an older set of messages and a reader checks which
        UIDs it covers."""

    def set_folder_cached(kind: str, value: bytes) -> None:
        """Remember a folder-wide derived value, replacing the last one of
        its kind (written with the per-message cache's batching)."""

    # --- for backends whose data is remote (issue 13, PostgreSQL) --------------------

    def prefetch(uids: Iterable[int], kinds: Iterable[str] = (), body: str | None = None) -> Deferred:
        """Make the synchronous reads of these messages local before a
        command needs them: ``get_cached`` of ``kinds``, and for the
        messages that lack one of ``kinds`` (every one of them when no kinds
        are given) ``body``: "header" fetches the start of the message (what
        a header read needs), "full" the whole message (``open_message``).
        A backend whose reads are local (Maildir) fires at once.  Reading
        without it stays correct but may wait for the network in the
        reactor thread; callers that read bodies or cached values of many
        messages (FETCH, SEARCH, POP3 RETR) call it first.  Fires with None."""

    # -- issue 12: OBJECTID (RFC 8474), SAVEDATE (RFC 8514)

    mailboxid = Attribute(
        "str: RFC 8474 MAILBOXID, 1-255 of A-Z a-z 0-9 _ -.  It stays with the folder through "
        "RENAME (and INBOX's through everything), and a folder deleted and created again gets a new one. "
        "Maildir: the GUID Dovecot keeps in the dovecot-uidlist header (G field), 32 hex digits.")

    def save_date(uid: int) -> float | None:
        """RFC 8514 SAVEDATE: when this message was saved into this folder
        (APPEND, COPY/MOVE, delivery), seconds since the epoch; None once it
        is expunged.  Maildir: the file's ctime when first asked (then kept
        in the cache, so a later flag change does not move it), as Dovecot
        reads a Maildir."""

    # -- Rights and shared mailboxes (issue 12)

    def touch_modseq(uids: Iterable[int]) -> Deferred:
        """Give each of these messages a new mod-sequence (above every
        earlier one, as a flag change would) without changing its flags: a
        flag kept outside the folder changed - a user's private \\Seen in
        a public mailbox - and only that user's sessions, told by the
        caller, see a difference.  Listeners need not be told (the Maildir
        store tells none; a backend whose change feed tells them anyway
        makes sessions re-send unchanged flags, which is harmless).  Dovecot does the
        same for its private index (the shared modseq of the message is
        bumped), so a CONDSTORE client's CHANGEDSINCE finds the message.
        Expunged UIDs are skipped.  Fires with the UIDs touched."""


# -- Account events (NOTIFY, issue 9) ----------------------------------------
#
# What an account tells its account listeners (an IMAP session that follows
# other folders with NOTIFY, RFC 5465): changes to messages in any of the
# account's folders, whoever made them and whether or not a session has the
# folder open, and changes to the folder list and the subscriptions.  Folder
# names are IMAP names as everywhere in this module.


@dataclass(frozen=True, slots=True)
class MessagesAdded:
    """New messages in ``folder``: APPEND, COPY/MOVE in, a delivery (also
    into a folder nobody has open), files another process dropped into a
    folder this process has open."""

    folder: str
    uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MessagesExpunged:
    """These messages of ``folder`` are gone for good (also every message
    of a folder that is being deleted)."""

    folder: str
    uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FlagsChanged:
    """Flags of these messages of ``folder`` changed."""

    folder: str
    uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FolderChanged:
    """Messages or flags of ``folder`` changed in a way the store could not
    itemise: another process changed a folder no session of this process
    has open (found by :meth:`IAccount.poll_folders`).  A listener reads the
    folder's counters again."""

    folder: str


@dataclass(frozen=True, slots=True)
class FolderCreated:
    """``folder`` was created (parents created along with it each get one)."""

    folder: str


@dataclass(frozen=True, slots=True)
class FolderDeleted:
    """``folder`` was deleted."""

    folder: str


@dataclass(frozen=True, slots=True)
class FolderRenamed:
    """``old`` is now ``new``; a folder renamed with its inferiors gives one
    event per folder moved, the top one first."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class SubscriptionChanged:
    """``folder`` was subscribed (True) or unsubscribed (False)."""

    folder: str
    subscribed: bool


AccountEvent = (MessagesAdded | MessagesExpunged | FlagsChanged | FolderChanged | FolderCreated
                | FolderDeleted | FolderRenamed | SubscriptionChanged)
"""Everything an :class:`IAccountListener` hears."""


class IAccountListener(Interface):
    """Follows a whole account (NOTIFY), not one open folder."""

    def account_event(account: IAccount, event: AccountEvent) -> None:
        """One change, in the order changes happened, in the reactor thread,
        before the Deferred of the call that made the change fires (as
        IFolderListener calls are).  Message events come from every folder,
        opened by a session or not; a listener that raises is logged and
        skipped."""


class IAccount(Interface):
    """One user's mail: INBOX plus folders.  One live object per user."""

    user = Attribute("user name")

    def list_folders() -> list:
        """Every existing folder name (str), INBOX included, sorted."""

    def folder_exists(name: str) -> bool:
        """True if a folder of this name exists (INBOX always)."""

    def special_use(name: str) -> str | None:
        """RFC 6154 attribute ('\\\\Sent', '\\\\Trash', ...) for this folder, or None."""

    def open_folder(name: str) -> Deferred:
        """Fires with the live IFolder (shared).  Errback NoSuchFolder.
        INBOX is matched case-insensitively."""

    def create_folder(name: str) -> Deferred:
        """Create it (and any missing parents).  FolderExists,
        InvalidFolderName (empty parts, '.', control chars, ...)."""

    def delete_folder(name: str) -> Deferred:
        """Delete it and its messages.  INBOX cannot be deleted
        (InvalidFolderName).  Open sessions on it see every message expunged.
        Inferior folders stay (RFC 3501 6.3.4, and Dovecot's Maildir++):
        the name then exists only as their parent, which LIST shows as
        \\Noselect / \\NonExistent, and ``folder_exists`` is False for it."""

    def rename_folder(old: str, new: str) -> Deferred:
        """Rename with its inferiors.  Renaming INBOX moves its messages into
        a new folder and leaves INBOX empty (RFC 3501)."""

    def subscriptions() -> list:
        """Subscribed names (str)."""

    def subscribe(name: str) -> Deferred | None:
        """Add a name to the subscriptions (need not exist).  May return a
        Deferred that fires once the change is stored (a remote backend):
        callers use ``maybeDeferred``."""

    def unsubscribe(name: str) -> Deferred | None:
        """Remove a name from the subscriptions (Deferred as ``subscribe``)."""

    def deliver(folder: str, source: MessageSource, flags: Iterable[str] = ()) -> Deferred:
        """Deliver a message from outside (LMTP): crash-safe, fsynced before
        the Deferred fires; the live folder (if open) is refreshed so its
        sessions see the new message at once.  Fires with the new UID."""

    def set_special_use(name: str, use: str | None) -> None:
        """(issue 12, CREATE-SPECIAL-USE) Give folder ``name`` the RFC 6154
        attribute ``use`` - one of ``\\Archive \\Drafts \\Junk \\Sent
        \\Trash`` - or take its own away (None); :meth:`special_use` answers
        it from then on, it follows the folder through RENAME and goes with
        DELETE.  NoSuchFolder; InvalidFolderName for another attribute."""

    def acquire_pop3_lock() -> Deferred:
        """Take the exclusive POP3 maildrop lock for the caller's session.
        Fires with True when taken, False when another session holds it -
        in this process or in any other serving the same mail (a second
        server, a worker: the Maildir store flocks a file in the Maildir,
        PostgreSQL takes an advisory lock).  A lock never outlives the
        process holding it (a crash releases it).  Errback: the lock could
        not be tried (the caller answers with a temporary failure)."""

    def release_pop3_lock() -> Deferred:
        """Give back the lock taken by :meth:`acquire_pop3_lock`; fires
        with None once it is free for others.  Releasing a lock not held
        is a no-op."""

    # -- Account events (NOTIFY, issue 9)

    def add_account_listener(listener: IAccountListener) -> None:
        """Start telling ``listener`` every :data:`AccountEvent` of this
        account.  Adding the same listener twice is a no-op."""

    def remove_account_listener(listener: IAccountListener) -> None:
        """Stop telling ``listener`` (unknown listeners are ignored)."""

    def poll_folders(names: Iterable[str]) -> Deferred:
        """Look for changes other processes made to the named folders
        (those that do not exist are skipped).  A folder this process has
        open is refreshed (its changes reach every listener itemised); for
        one it has not, a change since the previous poll of that folder is
        told to account listeners as :class:`FolderChanged` (the first poll
        of a folder only remembers its state).  Cheap when nothing changed
        (a few stats per folder, off the reactor thread).  Fires with None."""


    # -- Quota (issue 12)

    def quota() -> Deferred:
        """Fires with this owner's QuotaRoot (usage and the default rule's
        limits, RFC 9208), or None when no limit applies to the owner.
        Usage is kept incrementally (never a rescan per call or per
        delivery).  Every way in - ``IFolder.append``, ``IFolder.copy_to``
        into one of this owner's folders, ``deliver`` - fails with
        OverQuota, storing nothing, when the message would take usage
        beyond the limit that applies to the target folder (the default
        rule's, or a per-folder rule such as ``Trash:storage=+10%``)."""


@dataclass(frozen=True, slots=True)
class QuotaResource:
    """One RFC 9208 resource.  ``name`` is "STORAGE" (``usage``/``limit`` in
    octets as stored: the Maildir backend counts file sizes as Dovecot's
    quota does; the IMAP layer shows KiB) or "MESSAGE" (a count).  A limit
    of 0 is never reported: a resource without a limit is left out."""

    name: str
    usage: int
    limit: int


@dataclass(frozen=True, slots=True)
class QuotaRoot:
    """A quota root (Dovecot's default name: "User quota") and its limited
    resources."""

    name: str
    resources: tuple[QuotaResource, ...]


# -- Rights and shared mailboxes (issue 12)

RIGHTS = "lrswipkxtea"
"""RFC 4314 rights, in Dovecot's order: lookup, read, seen, write, insert,
post, create (k), delete mailbox (x), delete messages (t), expunge (e),
admin (a).  Advertised as RIGHTS=texk."""

OTHER_USERS_PREFIX = "Shared/"
"""Namespace of mailboxes other users share (``Shared/alice/Projects``)."""

PUBLIC_PREFIX = "Public/"
"""Namespace of the administrator's public mailboxes (``Public/info``)."""


class IUserView(IAccount):
    """One user's view of the store: their own folders (personal
    namespace, no prefix), the folders other users share with them
    (``Shared/<owner>/<folder>``) and the public mailboxes
    (``Public/<name>``), every call checked against the rights the user
    holds (RFC 4314, stored as Dovecot's ``dovecot-acl`` files).  What the
    protocols get at login (IMAP, POP3) and what LMTP delivers through, so
    all three meet the same checks.

    Semantics of the inherited IAccount methods under rights: a mailbox the
    user may not look up (no ``l``, and no ``r``) behaves as if it did not
    exist (NoSuchFolder); otherwise a missing right fails with NoPermission.
    ``list_folders`` lists what has ``l``; ``open_folder`` fires with an
    IFolder whose every call is checked (``r`` to read, ``s``/``w``/``t``
    for \\Seen/other flags and keywords/\\Deleted - flags without the
    right are left alone silently, in STORE, APPEND and what a COPY or
    MOVE brings in, as Dovecot does - ``i`` to append or copy in, ``e`` to
    expunge; ``rights`` on it is the user's rights string, from which the
    IMAP layer derives PERMANENTFLAGS); ``create_folder`` needs ``k`` on the parent (always allowed at
    the top of the personal namespace) and copies the parent's ACL;
    ``delete_folder`` needs ``x``; ``rename_folder`` ``x`` on the old name
    and ``k`` where it goes, within one owner only; ``deliver`` needs ``p``.
    The owner of a mailbox without an ACL has every right.  In public
    mailboxes \\Seen is private to each user (Dovecot's private index):
    one user reading a message does not mark it read for the others; the
    other flags are shared.  The live folder behind a shared mailbox is the
    owner's one object, so every user's sessions hear of every change."""

    def namespaces() -> tuple:
        """RFC 2342 NAMESPACE: (personal, other users, shared), each a list
        of (prefix, delimiter) pairs, possibly empty."""

    def my_rights(name: str) -> Deferred:
        """Fires with the user's rights on ``name`` as a string in RIGHTS
        order (MYRIGHTS; without RFC 4314's virtual ``c``/``d``, which the
        IMAP layer adds).  The entries of the ACL combine by Dovecot's
        rule (:mod:`mailsrv.store.acl`).  NoSuchFolder if it does not exist
        or the user has no right on it at all, or only ``p`` (Dovecot: the
        post right does not reveal a mailbox)."""

    def get_acl(name: str) -> Deferred:
        """Fires with [(identifier, rights)] of the mailbox (GETACL), as
        Dovecot shows them: ``anyone``, ``authenticated``, user names,
        ``-name`` for negative rights; the ``owner`` entry under the
        owner's user name (unless the ACL also names that user), and in the
        user's own mailboxes the owner's implicit rights when no entry
        gives them; rights with the virtual ``c``/``d``.  Needs ``a``."""

    def set_acl(name: str, identifier: str, rights: str) -> Deferred:
        """SETACL: ``rights`` replaces the identifier's rights, or with a
        leading ``+``/``-`` adds to or removes from them; empty rights
        remove the entry; ``c`` means ``kx`` and ``d`` ``te``.  Unknown
        right letters or an empty identifier: ValueError.  Needs ``a``.  A
        user never loses ``a`` on their own mailboxes by changing their own
        entry (Dovecot); ``owner`` on a public mailbox: StoreError (CANNOT).
        Sharing a mailbox with a user makes it appear in that user's
        other-users namespace.  Fires with None."""

    def delete_acl(name: str, identifier: str) -> Deferred:
        """DELETEACL: drop the identifier's entry.  Needs ``a``."""

    def list_rights(name: str, identifier: str) -> Deferred:
        """LISTRIGHTS: fires with (required rights, [optional groups]):
        what is always granted to ``identifier`` and what may be granted
        (every right on its own, and ``c``, ``d``).  Needs ``a``."""

    def quota_roots(name: str) -> Deferred:
        """GETQUOTAROOT: fires with the QuotaRoots governing this mailbox
        (the owner's, for the user's own mailboxes; empty for mailboxes of
        others, whose owner's quota still limits storing into them).
        NoSuchFolder as for ``my_rights``."""

    def get_quota(root: str) -> Deferred:
        """GETQUOTA: fires with the named QuotaRoot of the user's own quota;
        NoSuchFolder if the user has no such root."""


class IStore(Interface):
    """The process-wide store: one per running server."""

    def account(user: str) -> IAccount:
        """The live account object of this user (created on first use: the
        Maildir with its default folders).  The owner's unrestricted object:
        administration and tests; protocols use ``view``."""

    def view(user: str | None) -> IUserView:
        """``user``'s view of the store with their rights enforced (see
        IUserView); ``None`` is an anonymous poster (LMTP to a public
        mailbox), who holds what ``anyone`` is granted."""

    def public_mailbox(name: str) -> str | None:
        """The ``Public/...`` name of the public mailbox ``name`` (matched
        case-insensitively: mail addresses are), or None if there is none:
        LMTP delivers ``name@domain`` there when no user ``name`` exists."""

    def open_account(user: str) -> Deferred:
        """Fires with ``account(user)`` once its folder list and
        subscriptions are read (fresh, from a remote backend), so that the
        synchronous IAccount methods answer from memory afterwards.  The
        realm and the LMTP recipient lookup use it.  Errback ValueError for
        an invalid user name, StoreError when the backend is unavailable."""
