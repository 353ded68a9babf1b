"""The abuse-limit policy on its own, on a fake clock."""

from __future__ import annotations

from mailsrv.ops.limits import MAX_TRACKED, Limits, LimitSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**settings):
    clock = Clock()
    return Limits(LimitSettings(**settings), fail_delay=2.0, clock=clock), clock


def test_connections_per_address():
    lim, _ = make(connections_per_ip=3)
    assert lim.connection_refusal("192.0.2.1", 2) is None
    assert lim.connection_refusal("192.0.2.1", 3) == "connection limit"
    off, _ = make(connections_per_ip=0)
    assert off.connection_refusal("192.0.2.1", 10_000) is None


def test_sessions_per_user_and_address():
    lim, _ = make(userip_connections=10)
    assert not lim.user_refusal(9)
    assert lim.user_refusal(10)
    assert not make(userip_connections=0)[0].user_refusal(10_000)


def test_penalty_doubles_per_address_up_to_the_cap_and_ends_on_success():
    lim, _ = make(penalty_max=15, ban_after=0)
    assert lim.penalty("192.0.2.1") == 0
    waits = []
    for _ in range(6):
        lim.failed("192.0.2.1")
        waits.append(lim.penalty("192.0.2.1"))
    assert waits == [2, 4, 8, 15, 15, 15]
    assert lim.penalty("192.0.2.2") == 0  # per address
    lim.succeeded("192.0.2.1")
    assert lim.penalty("192.0.2.1") == 0


def test_ban_after_many_failures_then_forgiven():
    lim, clock = make(ban_after=3, ban_time=300, forget_after=600)
    assert lim.failed("192.0.2.1") is False
    assert lim.failed("192.0.2.1") is False
    assert lim.failed("192.0.2.1") is True  # this one starts the ban
    assert lim.banned("192.0.2.1") and lim.connection_refusal("192.0.2.1", 0) == "banned"
    lim.succeeded("192.0.2.1")  # a good password does not lift a running ban
    assert lim.banned("192.0.2.1")
    clock.now += 301
    assert not lim.banned("192.0.2.1")
    clock.now += 600
    assert lim.penalty("192.0.2.1") == 0 and lim.tracked() == 0


def test_no_delay_without_fail_delay_but_still_a_ban():
    lim = Limits(LimitSettings(ban_after=2), fail_delay=0.0, clock=Clock())
    lim.failed("a")
    assert lim.penalty("a") == 0
    assert lim.failed("a") is True and lim.banned("a")


def test_table_is_bounded():
    lim, _ = make(ban_after=0)
    for i in range(MAX_TRACKED + 5):
        lim.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert lim.tracked() <= MAX_TRACKED
