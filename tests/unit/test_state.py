"""state.py: Runner.exclusive, one operation at a time per container, with a
real flock on a file standing in for the netns file (flock treats them
alike), and the lock files of our own, fair to an exclusive waiter; the
records, written so that no reader sees half of one."""

import contextlib
import fcntl
import os
import threading
import time

import pytest

from ipvlan_ip.errors import CniError
from ipvlan_ip.node.echo import Echo
from ipvlan_ip.node.runner import Runner


class Told(Echo):
    """An echo that notes whether the runner said it had to wait."""
    def __init__(self):
        super().__init__()
        self.waited = threading.Event()

    def __call__(self, text: str) -> None:
        if text.startswith("# waiting"):
            self.waited.set()


def test_a_second_operation_waits_for_the_first(tmp_path):
    netns = tmp_path / "netns"
    netns.touch()
    order, holding, told = [], threading.Event(), Told()
    first_runner = Runner(timeout=10)

    def add():
        with first_runner.exclusive(str(netns)):
            order.append("ADD in")
            holding.set()
            assert told.waited.wait(10), "DEL never waited"
            order.append("ADD out")
    first = threading.Thread(target=add)
    first.start()
    assert holding.wait(10)
    # DEL says it waits (the echo) before it waits: the ADD lets go only then, so the two overlapped.
    with Runner(told, timeout=10).exclusive(str(netns)):
        order.append("DEL in")
        order.append("DEL out")
    first.join()
    assert order == ["ADD in", "ADD out", "DEL in", "DEL out"] and told.waited.is_set()


def test_waiting_past_the_timeout_is_try_again_later(tmp_path):
    netns = tmp_path / "netns"
    netns.touch()
    with open(netns) as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(CniError) as caught, Runner(timeout=1).exclusive(str(netns)):
            pass
    assert caught.value.code == 11 and "still running after 1 s" in caught.value.details


def test_nothing_to_hold_when_the_netns_is_gone(tmp_path):
    with Runner(timeout=1).exclusive(str(tmp_path / "gone")):
        pass
    with Runner(timeout=1).exclusive(""):
        pass


@contextlib.contextmanager
def overlapping_shared_holders(lock: str, hold: float = 0.2):
    """Three threads holding `lock` shared in turn, overlapping so that one
    always holds it (as ADDs that find the host's link do), until the block
    ends; entered only once two of them have held it at the same time."""
    stop, overlapped, count = threading.Event(), threading.Event(), threading.Lock()
    inside = [0]

    def holder():
        while not stop.is_set():
            with Runner(timeout=120).exclusive(lock, create=True, shared=True):
                with count:
                    inside[0] += 1
                    if inside[0] >= 2:
                        overlapped.set()
                time.sleep(hold)
                with count:
                    inside[0] -= 1
    holders = [threading.Thread(target=holder) for _ in range(3)]
    for n, thread in enumerate(holders):
        thread.start()
        time.sleep(hold / 3 * (n + 1))
    try:
        assert overlapped.wait(60), "the shared holders never overlapped"
        yield
    finally:
        stop.set()
        for thread in holders:
            thread.join()


def test_a_waiting_exclusive_holder_is_not_starved_by_overlapping_shared_ones(tmp_path):
    # hostAccess: ADDs hold the master's lock shared, overlapping; GC needs it exclusively. Without the
    # gate, flock keeps granting the shared lock and the exclusive one waits past its timeout.
    lock = str(tmp_path / "locks" / "m.lock")
    told, got = Told(), []
    with overlapping_shared_holders(lock), Runner(told, timeout=3).exclusive(lock, create=True):
        got.append(True)
    assert got == [True] and told.waited.is_set()       # it found the lock held, waited, and got it


def test_shared_holders_run_together(tmp_path):
    lock = str(tmp_path / "m.lock")
    with Runner(timeout=1).exclusive(lock, create=True, shared=True), \
            Runner(timeout=1).exclusive(lock, create=True, shared=True):
        pass


def test_a_record_being_written_is_never_read_as_one_and_any_record_name_is(tmp_path):
    # Records are named CONTAINERID:IFNAME, and an ifname may end in .tmp.
    runner = Runner()
    runner.save_record(str(tmp_path / "net" / "c1:eth0.tmp"), {"routes": []})
    (tmp_path / "net" / ".c2:eth0.123").write_text("{half written")
    assert runner.load_records(str(tmp_path)) == {"net/c1:eth0.tmp": {"routes": []}}
    assert sorted(p.name for p in (tmp_path / "net").iterdir()) == [".c2:eth0.123", "c1:eth0.tmp"]


def test_a_lock_for_the_longest_network_name_is_a_real_one(tmp_path, monkeypatch):
    """`ipam-NAME.lock.gate` for a 253-character name is longer than a file name may be: such a lock was
    once no lock at all (issue 48)."""
    from ipvlan_ip import ipam
    from ipvlan_ip.node import state
    monkeypatch.setattr(state, "LOCKS", str(tmp_path))
    path = ipam.turn_path("n" * 253)
    holder, other = Runner(timeout=0.2), Runner(timeout=0.2)
    with holder.exclusive(path, create=True), pytest.raises(CniError) as raised, other.exclusive(path, create=True):
        pass
    assert raised.value.code == 11 and "still running" in raised.value.details
    assert all(len(name) <= 255 for name in os.listdir(tmp_path))


def test_a_lock_file_that_cannot_be_opened_fails_the_call(tmp_path):
    from ipvlan_ip.node.state import LockUnavailable
    (tmp_path / "locks").write_text("a file where the dir should be")
    with pytest.raises(LockUnavailable) as raised, Runner().exclusive(str(tmp_path / "locks" / "x.lock"), create=True):
        pytest.fail("ran unlocked")
    assert raised.value.code == 11 and "could not open the lock file" in raised.value.details
