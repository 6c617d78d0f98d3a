"""The lease kernel (pantau/store/leases.py) on a real PostgreSQL and on SQLite:
acquire, renew, takeover after expiry with a new epoch, fair share, fencing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pantau.store import make_engine, migrate
from pantau.store.leases import Lease, LeaseLost, Leases, holders

pytestmark = pytest.mark.integration

KEYS = [f"kecamatan:{i:02d}" for i in range(13)] + ["kota"]


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'leases.db'}"
    eng = make_engine(url)
    migrate(eng)
    yield eng
    eng.dispose()


def wait_for(what: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_acquire_and_renew_keep_the_epoch(engine: Engine) -> None:
    a = Leases(engine, "rules", "a", ttl_s=5)
    held, lost = a.balance(KEYS)
    assert [x.key for x in held] == sorted(KEYS) and lost == []
    assert {x.epoch for x in held} == {1}
    time.sleep(0.05)
    again, lost = a.balance(KEYS)
    assert lost == []
    assert [(x.key, x.epoch) for x in again] == [(x.key, x.epoch) for x in held]
    assert all(n.expires_at > o.expires_at for n, o in zip(again, held, strict=True))
    assert {x.owner for x in holders(engine, "rules")} == {"a"}
    # Another kind is another set of leases.
    assert [x.key for x in Leases(engine, "vision", "a").balance(["cam1"])[0]] == ["cam1"]


def test_a_dead_owners_leases_are_taken_after_expiry_with_the_next_epoch(engine: Engine) -> None:
    a = Leases(engine, "rules", "a", ttl_s=1.0)
    b = Leases(engine, "rules", "b", ttl_s=1.0)
    a.balance(KEYS)
    held_b, _ = b.balance(KEYS)  # a is live and holds everything: b's share is taken
    assert held_b == []
    # a stops renewing (SIGKILL): after the ttl its heartbeat and leases run out.
    wait_for(lambda: len(b.balance(KEYS)[0]) == len(KEYS))
    assert {x.epoch for x in b.held.values()} == {2}
    held_a, lost_a = a.balance(KEYS)  # a comes back: everything it held is gone
    assert sorted(lost_a) == sorted(KEYS)
    assert all(x.owner == "b" for x in holders(engine, "rules"))
    assert len(held_a) < len(KEYS)  # it may take a fair share again, each at a new epoch
    assert all(x.epoch == 3 for x in held_a)


def test_three_owners_share_fairly_and_rebalance_when_one_dies(engine: Engine) -> None:
    owners = [Leases(engine, "rules", n, ttl_s=1.5) for n in ("a", "b", "c")]
    for _ in range(4):  # replicas start one after another and converge
        for o in owners:
            o.balance(KEYS)
    counts = sorted(len(o.held) for o in owners)
    assert counts == [4, 5, 5]
    keys = [k for o in owners for k in o.held]
    assert sorted(keys) == sorted(KEYS)  # each key held once
    db = {x.key: x.owner for x in holders(engine, "rules")}
    assert all(db[k] == o.owner for o in owners for k in o.held)
    # c dies: within ttl + a period a and b hold everything, 7 each.
    survivors = owners[:2]

    def settled() -> bool:
        for o in survivors:
            o.balance(KEYS)
        return sorted(len(o.held) for o in survivors) == [7, 7]

    wait_for(settled)
    assert sorted(k for o in survivors for k in o.held) == sorted(KEYS)
    assert owners[0].live_replicas() == ["a", "b"]


def test_clean_release_hands_over_at_once(engine: Engine) -> None:
    a = Leases(engine, "rules", "a", ttl_s=30)
    b = Leases(engine, "rules", "b", ttl_s=30)
    a.balance(KEYS)
    a.release_all()
    held, _ = b.balance(KEYS)
    assert len(held) == len(KEYS) and {x.epoch for x in held} == {2}


def test_a_restart_under_the_same_name_takes_its_keys_back_at_a_new_epoch(
    engine: Engine,
) -> None:
    Leases(engine, "rules", "rules-1", ttl_s=30).balance(["kota"])
    held, _ = Leases(engine, "rules", "rules-1", ttl_s=30).balance(["kota"])
    assert [(x.key, x.epoch) for x in held] == [("kota", 2)]


def test_fence_refuses_a_stale_epoch_inside_the_transaction(engine: Engine) -> None:
    a = Leases(engine, "rules", "a", ttl_s=1.0)
    b = Leases(engine, "rules", "b", ttl_s=1.0)
    (mine,) = a.balance(["kota"])[0]
    with engine.begin() as conn:
        a.fence(conn, mine)  # still mine: no error
    wait_for(lambda: bool(b.balance(["kota"])[0]))  # a froze past its lease; b took it
    theirs = b.held["kota"]
    assert theirs.epoch == mine.epoch + 1
    with pytest.raises(LeaseLost, match="now b at epoch 2"), engine.begin() as conn:
        a.fence(conn, mine)
    with engine.begin() as conn:
        b.fence(conn, theirs)
    stale = Lease("rules", "kota", "b", theirs.epoch - 1, theirs.expires_at)
    with pytest.raises(LeaseLost), engine.begin() as conn:
        b.fence(conn, stale)


def test_a_taker_waits_for_the_fenced_write_then_fences_it_off(postgres_url: str) -> None:
    """PostgreSQL: the old owner's fenced transaction and the takeover serialize on the
    lease row; whichever commits second sees the other."""
    engine = make_engine(postgres_url)
    migrate(engine)
    a = Leases(engine, "rules", "a", ttl_s=0.5)
    b = Leases(engine, "rules", "b", ttl_s=0.5)
    (mine,) = a.balance(["kota"])[0]
    time.sleep(0.7)  # expired: anyone's, but a's epoch still matches
    done = threading.Event()
    with engine.begin() as conn:
        a.fence(conn, mine)  # FOR SHARE until commit

        def take() -> None:
            b.balance(["kota"])
            done.set()

        taker = threading.Thread(target=take)
        taker.start()
        assert not done.wait(1.0), "the takeover did not wait for the fenced write"
    assert done.wait(20)
    taker.join()
    assert b.held["kota"].epoch == mine.epoch + 1
    with pytest.raises(LeaseLost), engine.begin() as conn:
        a.fence(conn, mine)
    engine.dispose()
