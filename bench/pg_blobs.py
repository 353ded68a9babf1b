"""Message bodies in PostgreSQL: ``bytea`` with EXTERNAL storage (TOAST,
uncompressed), ``bytea`` with the default EXTENDED storage (TOAST, pglz
compressed) and large objects, side by side in one throw-away cluster
(fsync on).

For each: write rate, a header read (the first 4 KiB, what ENVELOPE and
BODY[HEADER] need), a 4 KiB read near the end of the message (a partial
FETCH ``BODY[]<offset.length>``), a whole read in 256 KiB slices (how a
large body is streamed), and the bytes on disk.  The chosen layout and its
figures are written in ``mailsrv/store/pg/blobs.py``.

    python bench/pg_blobs.py [--small 300] [--large 6]
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from mailsrv.store.pg.cluster import TempCluster  # noqa: E402

SLICE = 256 * 1024
WORDS = ("the quick brown fox jumps over a lazy dog while mail servers store messages in databases "
         "and clients fetch headers envelopes body structures partial bodies").split()


def text_message(size: int, rng: random.Random) -> bytes:
    """A long plain-text message (a newsletter, a log): compressible."""
    head = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: text %d\r\n\r\n" % rng.randrange(1 << 30)
    lines, n = [head], len(head)
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(12)).encode() + b"\r\n"
        lines.append(line)
        n += len(line)
    return b"".join(lines)[:size]


def message(size: int, rng: random.Random) -> bytes:
    """A plausible message: text header and body, then a base64 attachment
    (random bytes: attachments are mostly compressed already); ``text_message``
    is the compressible kind."""
    head = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: blob %d\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
            b"Content-Type: text/plain\r\n\r\n" % rng.randrange(1 << 30))
    text = " ".join(rng.choice(WORDS) for _ in range(min(size // 12, 3000))).encode()
    body = head + text + b"\r\n--XX\r\nContent-Type: application/octet-stream\r\n"
    body += b"Content-Transfer-Encoding: base64\r\n\r\n"
    need = max(0, size - len(body) - 8)
    raw = rng.randbytes(need * 3 // 4 + 3)
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")[:need]
    return body + b64 + b"\r\n--XX--\r\n"


LAYOUTS = ("bytea_external", "bytea_extended", "large_object")


def setup(conn) -> None:
    conn.execute("CREATE TABLE bytea_external (id serial PRIMARY KEY, data bytea)")
    conn.execute("ALTER TABLE bytea_external ALTER data SET STORAGE EXTERNAL")
    conn.execute("CREATE TABLE bytea_extended (id serial PRIMARY KEY, data bytea)")
    conn.execute("CREATE TABLE large_object (id serial PRIMARY KEY, oid oid)")
    conn.commit()


def write(conn, layout: str, data: bytes) -> int:
    if layout == "large_object":
        oid = conn.execute("SELECT lo_from_bytea(0, %s)", (data,)).fetchone()[0]
        row = conn.execute("INSERT INTO large_object (oid) VALUES (%s) RETURNING id", (oid,)).fetchone()
    else:
        row = conn.execute(f"INSERT INTO {layout} (data) VALUES (%s) RETURNING id", (data,)).fetchone()
    conn.commit()
    return row[0]


def read(conn, layout: str, ident: int, offset: int, length: int) -> bytes:
    if layout == "large_object":
        q = "SELECT lo_get(oid, %s, %s) FROM large_object WHERE id = %s"
        return conn.execute(q, (offset, length, ident)).fetchone()[0]
    q = f"SELECT substring(data FROM %s FOR %s) FROM {layout} WHERE id = %s"
    return conn.execute(q, (offset + 1, length, ident)).fetchone()[0]


def size_on_disk(conn, layout: str) -> int:
    if layout == "large_object":
        return conn.execute("SELECT pg_total_relation_size('pg_largeobject') "
                            "+ pg_total_relation_size('large_object')").fetchone()[0]
    return conn.execute("SELECT pg_total_relation_size(%s)", (layout,)).fetchone()[0]


def timed(fn, repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(conn, layout: str, msgs: list[bytes], label: str) -> dict[str, float]:
    before = size_on_disk(conn, layout)
    t = time.perf_counter()
    ids = [write(conn, layout, m) for m in msgs]
    wall = time.perf_counter() - t
    conn.execute("CHECKPOINT")
    conn.execute(f"VACUUM {'pg_largeobject' if layout == 'large_object' else layout}")
    stored = size_on_disk(conn, layout) - before
    total = sum(len(m) for m in msgs)
    probe = ids[len(ids) // 2]
    n = len(msgs[len(ids) // 2])
    head = timed(lambda: read(conn, layout, probe, 0, 4096), 30)
    tail = timed(lambda: read(conn, layout, probe, max(0, n - 8192), 4096), 30)

    def whole() -> None:
        pos, got = 0, []
        while pos < n:
            got.append(read(conn, layout, probe, pos, SLICE))
            pos += SLICE
        assert b"".join(got) == msgs[len(ids) // 2]

    full = timed(whole, 5)
    return {"label": label, "layout": layout, "write_mb_s": total / wall / 1e6,
            "writes_s": len(msgs) / wall, "head_ms": head * 1e3, "tail_ms": tail * 1e3,
            "full_ms": full * 1e3, "disk_ratio": stored / total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=300, help="number of 100 kB messages")
    ap.add_argument("--large", type=int, default=6, help="number of 10 MB messages")
    args = ap.parse_args()
    import psycopg

    rng = random.Random(13)
    sets = [("100 kB", [message(100_000, rng) for _ in range(args.small)]),
            ("10 MB", [message(10_000_000, rng) for _ in range(args.large)]),
            ("2 MB tx", [text_message(2_000_000, rng) for _ in range(args.large * 2)])]
    with TempCluster(fsync=True) as cluster, psycopg.connect(cluster.dsn) as conn:
        setup(conn)
        conn.autocommit = False
        rows = []
        for label, msgs in sets:
            for layout in LAYOUTS:
                conn.autocommit = True
                rows.append(measure(conn, layout, msgs, label))
                conn.autocommit = False
    print(f"{'size':7} {'layout':15} {'writes/s':>9} {'MB/s':>7} {'head 4k':>9} {'tail 4k':>9} "
          f"{'whole':>9} {'disk/raw':>8}")
    for r in rows:
        print(f"{r['label']:7} {r['layout']:15} {r['writes_s']:9.1f} {r['write_mb_s']:7.1f} "
              f"{r['head_ms']:7.3f}ms {r['tail_ms']:7.3f}ms {r['full_ms']:7.1f}ms {r['disk_ratio']:8.2f}")


if __name__ == "__main__":
    main()
