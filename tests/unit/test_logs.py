"""drlrec.data.logs: the one reader of each service log, and what it does with a missing or torn file."""

from __future__ import annotations

from pathlib import Path

import pytest

from drlrec.data.logs import EXPOSURE_COLUMNS, ExposureLog, InteractionLog, read_exposures, read_interactions
from drlrec.errors import InputError


def test_interaction_reader_types_sorts_and_counts_what_it_leaves_out(tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv"
    # a torn last line (a crash mid-write), an unknown behaviour and a non-integer id are left out, counted
    path.write_bytes(b"5,10,3,pv,1512400000\n5,11,3,buy,1512400100\n6,12,4,oops,1512400200\nx,13,4,cart,1512400050\n4,13,4,cart,1512400050\n7,1")
    events = read_interactions(path)
    assert events.columns.tolist() == ["user_id", "item_id", "category_id", "behavior", "timestamp"]
    assert events["user_id"].tolist() == [4, 5, 5] and events["behavior"].tolist() == [1, 0, 3]
    assert str(events["behavior"].dtype) == "int8" and str(events["user_id"].dtype) == "int64"
    assert events.attrs["skipped_rows"] == 3


def test_a_missing_interaction_log_is_an_error_or_empty_when_allowed(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such interaction log"):
        read_interactions(tmp_path / "absent.csv")
    empty = read_interactions(tmp_path / "absent.csv", missing_ok=True)
    assert len(empty) == 0 and empty.columns.tolist() == ["user_id", "item_id", "category_id", "behavior", "timestamp"]
    (tmp_path / "empty.csv").write_text("")
    assert len(read_interactions(tmp_path / "empty.csv", missing_ok=True)) == 0
    with pytest.raises(InputError, match="empty"):
        read_interactions(tmp_path / "empty.csv")


def test_what_the_writers_append_the_readers_read_back(tmp_path: Path) -> None:
    log = InteractionLog(tmp_path / "interactions.csv")
    log.append(9, 40, 2, "fav", 1512400300)
    log.append(9, 41, 2, "buy", 1512400200)
    log.close()
    events = read_interactions(tmp_path / "interactions.csv")
    assert events["item_id"].tolist() == [41, 40] and events["behavior"].tolist() == [3, 2]  # by time

    assert read_exposures(tmp_path / "exposures.csv").columns.tolist() == list(EXPOSURE_COLUMNS)  # absent: empty
    exposures = ExposureLog(tmp_path / "exposures.csv")
    exposures.append(1512400000.5, 9, "control", "champion", "3", "", False, [40, 41, 42])
    exposures.close()
    frame = read_exposures(tmp_path / "exposures.csv")
    assert len(frame) == 1 and frame["items"].iloc[0] == "40 41 42" and frame["user_id"].iloc[0] == 9
