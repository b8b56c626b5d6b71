"""WS_CONNECTIONS_PER_USER (CONTRACT §6): the seats of one instance, shared by its processes.

Two SharedSeats on one instance directory stand for two worker processes: the boundary holds
whichever process counts, and seats given back (one, or all of a process going away) are free again."""
from __future__ import annotations

import pytest

from gatehouse.realtime.seats import LocalSeats, SharedSeats, seats


@pytest.fixture(params=["local", "shared"])
def pair(request, tmp_path):
    """Two processes' views of the instance's seats (one and the same for LocalSeats: one process)."""
    if request.param == "local":
        one = LocalSeats(16)
        return one, one
    return SharedSeats(16, tmp_path), SharedSeats(16, tmp_path)


def test_the_16th_seat_is_given_the_17th_refused_other_users_unaffected(pair):
    first, second = pair
    taken = [(first if n % 2 else second).take("alice") for n in range(16)]
    assert None not in taken and len(set(taken)) == 16
    assert first.take("alice") is None and second.take("alice") is None  # the 17th, in either process
    assert first.take("bob") is not None
    first.give_back(taken[3])  # one of alice's connections ends: one more fits, and no more
    assert second.take("alice") is not None
    assert first.take("alice") is None


def test_a_process_going_away_gives_back_all_its_seats(tmp_path):
    going, staying = SharedSeats(16, tmp_path), SharedSeats(16, tmp_path)
    going._pid, staying._pid = 101, 202  # two worker processes
    for _ in range(10):
        assert going.take("alice") is not None
    for _ in range(6):
        assert staying.take("alice") is not None
    assert staying.take("alice") is None
    going.give_back_all()
    assert [staying.take("alice") is not None for _ in range(11)] == [True] * 10 + [False]


def test_the_instance_directory_chooses_shared_seats(tmp_path, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_INSTANCE_DIR", str(tmp_path))
    assert isinstance(seats(16), SharedSeats)
    monkeypatch.delenv("GATEHOUSE_INSTANCE_DIR")
    assert isinstance(seats(16), LocalSeats)
