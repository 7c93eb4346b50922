"""The behaviour-log schema: raw columns, typed columns, behaviour codes and the reasons a row is rejected."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Raw column order of the original header-less UserBehavior.csv.
RAW_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")

#: Header names accepted for a headered CSV (case-insensitive), mapped to the raw column they mean.
HEADER_ALIASES: dict[str, str] = {
    "user_id": "user_id",
    "item_id": "item_id",
    "category_id": "category_id",
    "behavior_type": "behavior_type",
    "behavior": "behavior_type",
    "behaviour": "behavior_type",
    "timestamp": "timestamp",
}

#: Behaviours in code order: the int8 code of a behaviour is its index here.
#: The Taobao log's clock is UTC+8 (Beijing): local days, hours and day/night shares are measured in it.
LOCAL_UTC_OFFSET_S: int = 8 * 3600
LOCAL_TZ_NAME = "UTC+8"

BEHAVIORS: tuple[str, ...] = ("pv", "cart", "fav", "buy")
BEHAVIOR_CODE: dict[str, int] = {name: code for code, name in enumerate(BEHAVIORS)}
PV, CART, FAV, BUY = (BEHAVIOR_CODE[b] for b in BEHAVIORS)

#: Typed columns of events.parquet, in file order.
EVENT_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "category_id", "behavior", "timestamp")
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("category_id", pa.int64(), nullable=False),
        pa.field("behavior", pa.int8(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),
    ]
)
EVENT_DTYPES: dict[str, np.dtype] = {f.name: np.dtype(f.type.to_pandas_dtype()) for f in EVENTS_SCHEMA}

#: Why a raw row was quarantined. Checked in this order; a row gets the first reason that applies.
REASON_FIELD_COUNT = "wrong_field_count"
REASON_BAD_ID = "bad_id"
REASON_UNKNOWN_BEHAVIOR = "unknown_behavior"
REASON_BAD_TIMESTAMP = "bad_timestamp"
REASON_OUT_OF_WINDOW = "out_of_window"
REASON_DUPLICATE = "duplicate"
QUARANTINE_REASONS: tuple[str, ...] = (
    REASON_FIELD_COUNT,
    REASON_BAD_ID,
    REASON_UNKNOWN_BEHAVIOR,
    REASON_BAD_TIMESTAMP,
    REASON_OUT_OF_WINDOW,
    REASON_DUPLICATE,
)

#: quarantine.parquet: the physical line number (1-based, header included), the reason and the raw bytes.
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("line", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.binary()),
    ]
)


def behavior_names(codes: np.ndarray) -> np.ndarray:
    """Map int8 behaviour codes to their names (vectorized)."""
    return np.asarray(BEHAVIORS, dtype=object)[np.asarray(codes, dtype=np.int64)]
