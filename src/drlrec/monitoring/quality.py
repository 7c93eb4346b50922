"""The serving logs in monitoring: served lists against the interactions that followed (online HR@k)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from drlrec.errors import InputError


def exposures_long(exposures: pd.DataFrame) -> pd.DataFrame:
    """Served lists as one row per (list, rank, item): columns list_id, user_id, timestamp, rank, item_id.

    Accepts the long form already (user_id, timestamp, item_id, optional rank/request_id) or one row per
    list with the items in one text column (`items`/`item_ids`: JSON list, or ids separated by spaces,
    semicolons or `|`)."""
    if exposures.empty:
        return pd.DataFrame(columns=["list_id", "user_id", "timestamp", "rank", "item_id"])
    if "timestamp" not in exposures.columns and "served_at" in exposures.columns:  # the serving API's log
        served_at = pd.to_numeric(exposures["served_at"], errors="coerce")
        exposures = exposures.assign(timestamp=np.floor(served_at))
    for column in ("user_id", "timestamp"):
        if column not in exposures.columns:
            raise InputError(f"exposure log has no {column} column (columns: {', '.join(exposures.columns)})")
    list_column = next((c for c in ("items", "item_ids") if c in exposures.columns), None)
    if list_column is None and "item_id" not in exposures.columns:
        raise InputError("exposure log has neither item_id nor items/item_ids columns")
    if list_column is not None:
        text = exposures[list_column].astype(str).str.replace(r"[\[\]\"' ]+", " ", regex=True)
        parts = text.str.strip().str.split(r"[ ;|,]+", regex=True)
        lengths = parts.str.len().to_numpy()
        list_id = np.repeat(np.arange(len(exposures)), lengths)
        flat = pd.to_numeric(pd.Series(np.concatenate(parts.to_numpy()) if len(parts) else []), errors="coerce")
        rank = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        frame = pd.DataFrame(
            {
                "list_id": list_id,
                "user_id": exposures["user_id"].to_numpy()[list_id],
                "timestamp": exposures["timestamp"].to_numpy()[list_id],
                "rank": rank,
                "item_id": flat.to_numpy(),
            }
        )
    else:
        frame = exposures.copy()
        key = [c for c in ("request_id",) if c in frame.columns] or ["user_id", "timestamp"]
        frame["list_id"] = pd.factorize(pd.MultiIndex.from_frame(frame[key]))[0]
        if "rank" not in frame.columns:
            frame["rank"] = frame.groupby("list_id").cumcount()
        frame = frame[["list_id", "user_id", "timestamp", "rank", "item_id"]]
    frame = frame.dropna(subset=["user_id", "timestamp", "item_id"])
    return frame.astype({"user_id": np.int64, "timestamp": np.int64, "item_id": np.int64}).reset_index(drop=True)


def online_quality(exposures: pd.DataFrame, interactions: pd.DataFrame, k: int) -> dict[str, Any]:
    """HR@k of served lists: a list counts when the user interacted after it was served; it is a hit when
    that next interaction's item is in the list's top k. Returns lists, hits and hr."""
    long = exposures[exposures["rank"] < k]
    lists = long.drop_duplicates("list_id")[["list_id", "user_id", "timestamp"]].sort_values("timestamp")
    nxt = interactions[["user_id", "timestamp", "item_id"]].sort_values("timestamp")
    nxt = nxt.rename(columns={"timestamp": "next_timestamp", "item_id": "next_item"})
    joined = pd.merge_asof(
        lists, nxt, left_on="timestamp", right_on="next_timestamp", by="user_id", direction="forward"
    ).dropna(subset=["next_item"])
    if joined.empty:
        return {"k": k, "lists": 0, "hits": 0, "hr": None}
    joined["next_item"] = joined["next_item"].astype(np.int64)
    hit_pairs = long.merge(joined[["list_id", "next_item"]], left_on=["list_id", "item_id"], right_on=["list_id", "next_item"])
    hits = int(hit_pairs["list_id"].nunique())
    return {"k": k, "lists": int(len(joined)), "hits": hits, "hr": hits / len(joined)}
