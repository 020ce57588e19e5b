"""blockrepl's status reduced to the member status's `volume` (what the operator aggregates)."""

from __future__ import annotations

from hastack_heartbeat.status import volume_summary


def peer(conn: str = "Connected", repl: str = "Established", oos: int = 0, **kw: object) -> dict[str, object]:
    return {"connection": conn, "replication": repl, "out_of_sync_bytes": oos, "split_brain": False, **kw}


def test_connected_uptodate_primary() -> None:
    st = {"role": "Primary", "disk": "UpToDate", "peers": [peer()]}
    assert volume_summary(st) == {"role": "Primary", "diskState": "UpToDate", "connection": "Connected",
                                  "replication": "Established", "outOfSyncBytes": 0}


def test_the_worst_link_is_shown_and_out_of_sync_bytes_add_up() -> None:
    st = {"role": "Primary", "disk": "UpToDate",
          "peers": [peer(oos=4096), peer("Connecting", "Off", oos=8192)]}
    out = volume_summary(st)
    assert (out["connection"], out["replication"], out["outOfSyncBytes"]) == ("Connecting", "Off", 12288)


def test_resync_progress_and_split_brain() -> None:
    syncing = peer(repl="SyncTarget", sync={"percent": 42.5})
    out = volume_summary({"role": "Secondary", "disk": "Inconsistent", "peers": [syncing]})
    assert out["syncProgress"] == "42.5%" and "splitBrain" not in out
    split = peer("StandAlone", "Off", split_brain=True)
    assert volume_summary({"role": "Primary", "disk": "UpToDate", "peers": [split]})["splitBrain"] is True


def test_no_peers_and_missing_fields() -> None:
    assert volume_summary({}) == {"role": "Unknown", "diskState": "Unknown", "connection": "None",
                                  "replication": "None", "outOfSyncBytes": 0}
