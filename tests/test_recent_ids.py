"""The in-memory filter of recently stored ids: exact below its capacity, bounded above it, never wrong."""

from __future__ import annotations

from mcp_analytics.recent_ids import RecentIds


def test_an_event_after_the_floor_is_new_unless_its_id_was_remembered():
    recent = RecentIds(floor_us=1_000)
    recent.remember([(RecentIds.key("p", "a"), 2_000)])
    assert recent.may_be_stored(RecentIds.key("p", "a"), 2_000)
    assert not recent.may_be_stored(RecentIds.key("p", "b"), 2_000)
    assert not recent.may_be_stored(RecentIds.key("q", "a"), 2_000), "ids are per project"
    assert recent.may_be_stored(RecentIds.key("p", "b"), 999), "older than the floor: only the table knows"


def test_past_its_capacity_it_forgets_the_oldest_and_raises_the_floor_past_them():
    recent = RecentIds(floor_us=0, capacity=3)
    keys = {name: RecentIds.key("p", name) for name in "abcde"}
    recent.remember([(keys["c"], 30), (keys["a"], 10), (keys["b"], 20), (keys["d"], 40), (keys["e"], 40)])
    assert len(recent) == 3
    assert recent.floor_us == 21
    assert recent.may_be_stored(keys["a"], 10) and recent.may_be_stored(keys["b"], 20)  # below the floor
    assert [recent.may_be_stored(keys[name], 30 + 10 * (name > "c")) for name in "cde"] == [True, True, True]
    assert not recent.may_be_stored(RecentIds.key("p", "new"), 40)


def test_events_of_a_forgotten_timestamp_go_together():
    recent = RecentIds(floor_us=0, capacity=2)
    recent.remember([(RecentIds.key("p", name), 10) for name in "abc"])
    assert (len(recent), recent.floor_us) == (0, 11)


def test_events_older_than_the_floor_are_not_remembered():
    recent = RecentIds(floor_us=100)
    recent.remember([(RecentIds.key("p", "old"), 50)])
    assert len(recent) == 0
