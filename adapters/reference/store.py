"""Durable server-side accounting for the reference session server (SQLite).

Draft-tempo-session-00, "Server-Side Accounting": per channel the server keeps
acceptedCumulative, spent, the latest verified on-chain deposit / settled /
closeRequestedAt, and the highest voucher's signature. Everything is committed
before a response leaves ("Crash Safety"), with `synchronous=FULL` in WAL mode.

Amounts are uint128 in the protocol, which does not fit SQLite's 64-bit
INTEGER, so they are stored as TEXT holding the decimal string.

Durability by group commit: connections run `synchronous=NORMAL` (a commit writes its WAL
frames without fsync) and `transaction()` returns only after an fsync of the WAL file that
started after its COMMIT (`_GroupSync`): what `synchronous=FULL` does per commit, shared by
the transactions of all threads that commit while one fsync runs. A response is built after
its transaction returns, so it still leaves only once its charge is on disk.

Concurrency: every update of one channel happens with that channel's
process-wide lock held (`ChannelLocks`) *and* inside a `BEGIN IMMEDIATE`
transaction, so updates of one channel are linearizable between threads of
this process and also between processes sharing the file.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import weakref
from contextlib import contextmanager
from typing import Iterator

import attrs

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS channels (
    channel_id TEXT PRIMARY KEY,          -- lowercase 0x bytes32
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    token TEXT NOT NULL,
    authorized_signer TEXT NOT NULL,      -- zero address: the payer signs
    deposit TEXT NOT NULL,                -- decimal uint128, last verified on-chain deposit
    settled TEXT NOT NULL,                -- decimal uint128, last verified on-chain settled
    close_requested_at INTEGER NOT NULL,  -- last verified on-chain closeRequestedAt (0: none)
    finalized INTEGER NOT NULL,           -- 0/1
    accepted_cumulative TEXT NOT NULL,    -- decimal uint128, highest accepted voucher
    highest_signature TEXT NOT NULL,      -- signature of that voucher (0x hex)
    spent TEXT NOT NULL,                  -- decimal uint128, charged so far
    units INTEGER NOT NULL,               -- units delivered so far
    created_seq INTEGER NOT NULL          -- order of creation (hint resolution: newest first)
);
CREATE INDEX IF NOT EXISTS channels_by_payer ON channels (payer, payee, created_seq);
CREATE TABLE IF NOT EXISTS idempotency (
    channel_id TEXT NOT NULL,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    headers TEXT NOT NULL,                -- JSON list of [name, value]
    body TEXT NOT NULL,                   -- response body (UTF-8 text)
    PRIMARY KEY (channel_id, key)
);
CREATE TABLE IF NOT EXISTS topups (
    raw_id TEXT PRIMARY KEY,              -- keccak256 of the signed transaction as sent
    channel_id TEXT NOT NULL,
    tx_hash TEXT NOT NULL
);
"""

ZERO_ADDRESS = "0x" + "00" * 20


@attrs.frozen
class StoredChannel:
    """One row of `channels`, amounts as ints."""

    channel_id: str
    payer: str
    payee: str
    token: str
    authorized_signer: str
    deposit: int
    settled: int
    close_requested_at: int
    finalized: bool
    accepted_cumulative: int
    highest_signature: str
    spent: int
    units: int
    created_seq: int

    @property
    def expected_signer(self) -> str:
        return self.payer if self.authorized_signer == ZERO_ADDRESS else self.authorized_signer

    @property
    def available(self) -> int:
        return self.accepted_cumulative - self.spent


@attrs.frozen
class StoredResponse:
    """A served content response kept for `Idempotency-Key` replays."""

    method: str
    path: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str


_COLUMNS = (
    "channel_id, payer, payee, token, authorized_signer, deposit, settled, close_requested_at, "
    "finalized, accepted_cumulative, highest_signature, spent, units, created_seq"
)


def _accounting(rec: StoredChannel) -> tuple:
    """The columns a channel's accounting updates, in table order (amounts as decimal TEXT)."""
    return (str(rec.deposit), str(rec.settled), int(rec.close_requested_at), int(rec.finalized),
            str(rec.accepted_cumulative), rec.highest_signature, str(rec.spent), int(rec.units))


def _record(row: tuple) -> StoredChannel:
    return StoredChannel(
        channel_id=row[0],
        payer=row[1],
        payee=row[2],
        token=row[3],
        authorized_signer=row[4],
        deposit=int(row[5]),
        settled=int(row[6]),
        close_requested_at=int(row[7]),
        finalized=bool(row[8]),
        accepted_cumulative=int(row[9]),
        highest_signature=row[10],
        spent=int(row[11]),
        units=int(row[12]),
        created_seq=int(row[13]),
    )


class ChannelLocks:
    """One re-entrant lock per channel id, created on demand (process-wide).

    The table holds its locks weakly: a lock lives while some thread holds a reference
    to it (while it is held or waited for), so the table is bounded by the number of
    requests in flight, not by the number of channel ids ever named (any client can
    name arbitrary ids). Two threads asking for one id while either is still using its
    lock get the same lock object, which is all mutual exclusion needs.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: "weakref.WeakValueDictionary[str, threading.RLock]" = weakref.WeakValueDictionary()

    def __len__(self) -> int:
        return len(self._locks)

    def get(self, channel_id: str) -> threading.RLock:
        key = channel_id.lower()
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.RLock()
            return lock


class _GroupSync:
    """Group commit: `wait(ticket)` returns once an fsync of the WAL file that began after commit
    number `ticket` has finished. One thread runs the fsync; the threads that committed before it
    began wait for it and return together; later ones run the next."""

    def __init__(self, wal_path: str, fsync=os.fdatasync) -> None:
        self.wal_path = wal_path
        self.fsync = fsync  # tests replace it to hold a sync and watch who waits
        self._cond = threading.Condition()
        self._committed = 0
        self._synced = 0
        self._syncing = False
        self.syncs = 0

    def committed(self) -> int:
        with self._cond:
            self._committed += 1
            return self._committed

    def wait(self, ticket: int) -> None:
        with self._cond:
            while self._synced < ticket:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing, target = True, self._committed
                self._cond.release()
                try:
                    self._sync_file()
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self._synced = max(self._synced, target)

    def _sync_file(self) -> None:
        try:
            fd = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:  # pragma: no cover - the WAL exists while a connection is open
            return
        try:
            self.fsync(fd)
            self.syncs += 1
        finally:
            os.close(fd)


class Tx:
    """The operations available inside one `BEGIN IMMEDIATE` transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def get(self, channel_id: str) -> StoredChannel | None:
        row = self._c.execute(
            f"SELECT {_COLUMNS} FROM channels WHERE channel_id = ?", (channel_id.lower(),)
        ).fetchone()
        return _record(row) if row else None

    def insert(self, rec: StoredChannel) -> StoredChannel:
        seq = self._c.execute("SELECT COALESCE(MAX(created_seq), 0) + 1 FROM channels").fetchone()[0]
        rec = attrs.evolve(rec, created_seq=int(seq))
        self._c.execute(
            f"INSERT INTO channels ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                rec.channel_id.lower(),
                rec.payer,
                rec.payee,
                rec.token,
                rec.authorized_signer,
                *_accounting(rec),
                rec.created_seq,
            ),
        )
        return rec

    def update(self, rec: StoredChannel) -> None:
        cur = self._c.execute(
            "UPDATE channels SET deposit=?, settled=?, close_requested_at=?, finalized=?, "
            "accepted_cumulative=?, highest_signature=?, spent=?, units=? WHERE channel_id=?",
            (*_accounting(rec), rec.channel_id.lower()),
        )
        if cur.rowcount != 1:
            raise KeyError(rec.channel_id)

    def get_response(self, channel_id: str, key: str) -> StoredResponse | None:
        row = self._c.execute(
            "SELECT method, path, status, headers, body FROM idempotency WHERE channel_id=? AND key=?",
            (channel_id.lower(), key),
        ).fetchone()
        if row is None:
            return None
        return StoredResponse(
            method=row[0],
            path=row[1],
            status=int(row[2]),
            headers=tuple((str(k), str(v)) for k, v in json.loads(row[3])),
            body=row[4],
        )

    def put_response(self, channel_id: str, key: str, resp: StoredResponse) -> None:
        self._c.execute(
            "INSERT INTO idempotency (channel_id, key, method, path, status, headers, body) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                channel_id.lower(),
                key,
                resp.method,
                resp.path,
                resp.status,
                json.dumps([list(h) for h in resp.headers]),
                resp.body,
            ),
        )


class Store:
    """The SQLite file. Connections are per thread; writes go through `transaction()`."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_guard = threading.Lock()
        self.locks = ChannelLocks()
        self.sync = _GroupSync(self.path + "-wal")
        conn = self._conn()
        conn.executescript(_SCHEMA)
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # the commit's fsync is _GroupSync's
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._all_guard:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """BEGIN IMMEDIATE ... COMMIT, then wait until the commit is on disk (group commit);
        any exception rolls everything back."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
            self.sync.wait(self.sync.committed())

    # -- reads outside a transaction (a consistent snapshot each) --
    def get(self, channel_id: str) -> StoredChannel | None:
        row = self._conn().execute(
            f"SELECT {_COLUMNS} FROM channels WHERE channel_id = ?", (channel_id.lower(),)
        ).fetchone()
        return _record(row) if row else None

    def all(self) -> list[StoredChannel]:
        rows = self._conn().execute(f"SELECT {_COLUMNS} FROM channels ORDER BY created_seq").fetchall()
        return [_record(r) for r in rows]

    def newest_for_payer(self, payer: str, payee: str) -> StoredChannel | None:
        row = self._conn().execute(
            f"SELECT {_COLUMNS} FROM channels WHERE payer = ? AND payee = ? ORDER BY created_seq DESC LIMIT 1",
            (payer.lower(), payee.lower()),
        ).fetchone()
        return _record(row) if row else None

    def get_response(self, channel_id: str, key: str) -> StoredResponse | None:
        return Tx(self._conn()).get_response(channel_id, key)

    def topup_hash(self, raw_id: str) -> str | None:
        """The tx hash of an already applied signed topUp transaction (a signed tx applies once)."""
        row = self._conn().execute("SELECT tx_hash FROM topups WHERE raw_id = ?", (raw_id,)).fetchone()
        return row[0] if row else None

    def put_topup(self, tx: Tx, raw_id: str, channel_id: str, tx_hash: str) -> None:
        tx._c.execute(
            "INSERT OR IGNORE INTO topups (raw_id, channel_id, tx_hash) VALUES (?,?,?)",
            (raw_id, channel_id.lower(), tx_hash),
        )

    def dump(self) -> str:
        """Every stored row as SQL text (tests compare it byte for byte)."""
        return "\n".join(self._conn().iterdump())

    def close(self) -> None:
        with self._all_guard:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except Exception:
                pass
        self._local = threading.local()
