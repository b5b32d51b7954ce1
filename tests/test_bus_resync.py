from hivekit.bus import EventBus
from hivekit.events import LogLine


def test_since_replays_what_a_reconnecting_client_missed():
    bus = EventBus(replay=3)
    for i in range(5):
        bus.publish(LogLine(agent="coder", line=str(i)))
    assert [e.seq for e in bus.since(3)] == [4, 5]
    assert bus.since(5) == []
    assert bus.since(1) is None  # seq 2 is forgotten: the client must reload its snapshot


def test_a_seq_from_another_daemon_life_asks_for_a_resync():
    old, new = EventBus(), EventBus()
    for _ in range(3):
        old.publish(LogLine(agent="coder", line="x"))
    new.publish(LogLine(agent="coder", line="y"))
    assert new.since(old.seq) is None
    assert old.boot != new.boot
