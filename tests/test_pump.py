"""The shared command pump: order, back-pressure, waiting for the next line."""

from __future__ import annotations

from twisted.internet import defer

from mailsrv.pump import CommandPump


class Lines:
    def __init__(self) -> None:
        self.buf = b""

    def push(self, data: bytes) -> None:
        self.buf += data

    def next_event(self) -> bytes | None:
        i = self.buf.find(b"\n")
        if i < 0:
            return None
        line, self.buf = self.buf[:i], self.buf[i + 1:]
        return line

    def buffered(self) -> int:
        return len(self.buf)


class Reading:
    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False


def test_commands_run_one_at_a_time_in_order() -> None:
    src, seen, pending = Lines(), [], []

    def run(ev: bytes) -> defer.Deferred[None] | None:
        seen.append(ev)
        if ev.startswith(b"slow"):
            d: defer.Deferred[None] = defer.Deferred()
            pending.append(d)
            return d
        return None

    p = CommandPump(src, run, Reading())
    src.push(b"a\nslow1\nb\nslow2\nc\n")
    p.pump()
    assert seen == [b"a", b"slow1"]
    pending.pop().callback(None)
    assert seen == [b"a", b"slow1", b"b", b"slow2"]
    pending.pop().callback(None)
    assert seen == [b"a", b"slow1", b"b", b"slow2", b"c"]


def test_coroutines_and_already_fired_results() -> None:
    src, seen = Lines(), []

    async def run(ev: bytes) -> None:
        seen.append(ev)

    p = CommandPump(src, run, Reading())
    src.push(b"1\n2\n3\n")
    p.pump()
    assert seen == [b"1", b"2", b"3"] and not p.busy


def test_running_command_reads_the_next_event() -> None:
    src, got = Lines(), []

    async def run(ev: bytes) -> None:
        if ev == b"AUTH":
            got.append(await p.next_event())
        got.append(ev)

    p = CommandPump(src, run, Reading())
    src.push(b"AUTH\n")
    p.pump()
    assert got == [] and p.busy
    src.push(b"response\nNEXT\n")
    p.pump()
    assert got == [b"response", b"AUTH", b"NEXT"]


def test_backpressure_pauses_and_resumes_reading() -> None:
    src, transport, pending = Lines(), Reading(), []

    def run(ev: bytes) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        pending.append(d)
        return d

    p = CommandPump(src, run, transport, high_water=100)
    src.push(b"x\n" + b"y" * 150 + b"\n")
    p.pump()
    assert transport.paused
    pending.pop().callback(None)  # the big line is taken: backlog gone
    assert not transport.paused


def test_close_fails_a_waiting_command() -> None:
    src, errors = Lines(), []

    async def run(ev: bytes) -> None:
        try:
            await p.next_event()
        except ConnectionError as e:
            errors.append(e)

    p = CommandPump(src, run, Reading())
    src.push(b"IDLE\n")
    p.pump()
    p.close()
    assert len(errors) == 1
    src.push(b"more\n")
    p.pump()
    assert len(errors) == 1
