"""Logged transitions of one split, stored compactly: an event table plus index arrays, gathered per batch.

Layout of the folder `<split>/` (one `<field>.npy` per field) (E event-table rows, T transitions, N = seq_len, D = episodes ending in the split):

    event table, row 0 is an all-zero padding row; then the split's events and, before each user's first
    split event, up to N of the user's earlier events (history from earlier splits, so a validation state
    can hold train-period events), sorted by (user, time):
        item_idx        [E] int32    vocabulary index (0 pad, 1 unknown)
        category_idx    [E] int32
        behavior_token  [E] int8     behaviour code + 1 (0 pad; 1 pv, 2 cart, 3 fav, 4 buy)
        step_features   [E, 20] f32  STEP_FEATURES
    one row per event of the split, in (user, time) order:
        row             [T] int32    event-table row of the action (the event itself)
        state_start     [T] int32    event-table row of the user's first row in the table: the state is
                                     the window of rows [max(state_start, row - N), row), oldest first,
                                     left-padded with row 0 (a user's rows are contiguous)
        state_len       [] int32     N
        profile         [T, 10] f32  PROFILE_FEATURES before the action
        reward_purchase [T] f32      1 if the action is a buy (the paper's reward)
        reward_business [T] f32      featurize.reward_weights of the action's behaviour
        done            [T] bool     the user's last event in this split: an episode is a user's sequence
                                     within the split (session_end is stored for session episodes)
        session_end     [T] bool     the last event of its 30-minute session
        user_id, timestamp [T] int64; session_index, session_position [T] int32
        terminal_row    [T] int32    row of terminal_profile for a done transition, -1 otherwise
        terminal_profile [D, 10] f32 profile after the action of each done transition (at its timestamp)

A state is a view, not a copy: nothing per transition beyond `row` and `state_start` says where its
window is, so the file grows with the events and not with events x N (N = 50 costs what N = 10 does).
The next state of transition i is the window of rows [max(state_start, row - N + 1), row] (the state
shifted by the action); its profile is `profile[i + 1]` when the episode goes on (the next row is the same
user's next event) and `terminal_profile[terminal_row[i]]` when it is done.
`state_rows` / `next_state_rows` find the windows of a batch; `gather_batch` and `rl.logged.state_batch`
gather them.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from drlrec.errors import InputError
from drlrec.features.states import window_rows, window_states

#: Field order on disk and in Transitions.
STORED_FIELDS: tuple[str, ...] = (
    "item_idx",
    "category_idx",
    "behavior_token",
    "step_features",
    "row",
    "state_start",
    "state_len",
    "profile",
    "reward_purchase",
    "reward_business",
    "done",
    "session_end",
    "user_id",
    "timestamp",
    "session_index",
    "session_position",
    "terminal_row",
    "terminal_profile",
)
REWARDS: tuple[str, ...] = ("purchase_binary", "business_weighted")


class Transitions(NamedTuple):
    """One split: event table (E rows, row 0 padding) + T transitions with N-step states (see module doc)."""

    item_idx: np.ndarray  # [E] int32
    category_idx: np.ndarray  # [E] int32
    behavior_token: np.ndarray  # [E] int8: behaviour code + 1, 0 = padding
    step_features: np.ndarray  # [E, 20] float32
    row: np.ndarray  # [T] int32: event-table row of the action
    state_start: np.ndarray  # [T] int32: event-table row of the user's first row (the window's floor)
    state_len: np.ndarray  # [] int32: N, the number of previous interactions in a state
    profile: np.ndarray  # [T, 10] float32: profile before the action
    reward_purchase: np.ndarray  # [T] float32
    reward_business: np.ndarray  # [T] float32
    done: np.ndarray  # [T] bool: last event of the user in this split
    session_end: np.ndarray  # [T] bool
    user_id: np.ndarray  # [T] int64: raw user id
    timestamp: np.ndarray  # [T] int64: Unix seconds of the action
    session_index: np.ndarray  # [T] int32: the user's session number (0-based)
    session_position: np.ndarray  # [T] int32: events before the action in its session
    terminal_row: np.ndarray  # [T] int32: row of terminal_profile where done, else -1
    terminal_profile: np.ndarray  # [D, 10] float32: profile after each done action

    @property
    def seq_len(self) -> int:
        """N, the number of previous interactions in a state."""
        return int(self.state_len)

    @property
    def num_transitions(self) -> int:
        """T, the number of transitions (len() of the tuple is its number of fields)."""
        return int(self.row.shape[0])

    @property
    def action_item(self) -> np.ndarray:
        """[T] int32 item index of the logged action (the next item)."""
        return self.item_idx[self.row]

    @property
    def action_category(self) -> np.ndarray:
        """[T] int32 category index of the action."""
        return self.category_idx[self.row]

    @property
    def action_behavior(self) -> np.ndarray:
        """[T] int8 behaviour code of the action (0 pv, 1 cart, 2 fav, 3 buy)."""
        return (self.behavior_token[self.row] - 1).astype(np.int8)

    def actions_at(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(item, behaviour code, category) of the logged actions at `index` ([B] each): what `action_item`,
        `action_behavior` and `action_category` hold there, read for those rows alone (the properties
        gather all T rows: 312 MB per call at 78M transitions)."""
        rows = self.row[np.asarray(index, dtype=np.int64)]
        return (
            self.item_idx[rows],
            (self.behavior_token[rows] - 1).astype(np.int8),
            self.category_idx[rows],
        )

    def reward(self, kind: str) -> np.ndarray:
        """[T] float32 reward of the action: `purchase_binary` or `business_weighted`."""
        if kind not in REWARDS:
            raise ValueError(f"unknown reward {kind!r}; expected one of {REWARDS}")
        return self.reward_purchase if kind == "purchase_binary" else self.reward_business

    def state_rows(self, indices: np.ndarray | None = None) -> np.ndarray:
        """[B, N] int32 event-table rows of the states at `indices` (all transitions if None): the N rows
        before the action, oldest first, 0 where the user has fewer earlier events."""
        return window_rows(self.row, self.state_start, self.seq_len, indices, end_offset=0)

    def next_state_rows(self, indices: np.ndarray | None = None) -> np.ndarray:
        """[B, N] int32 event-table rows of the next states: the state shifted left, the action appended."""
        return window_rows(self.row, self.state_start, self.seq_len, indices, end_offset=1)

    def next_profile(self, indices: np.ndarray | None = None) -> np.ndarray:
        """[B, 10] float32 profile of the next state (the user's profile after the action)."""
        indices = np.arange(self.num_transitions) if indices is None else np.asarray(indices)
        # the last transition of a split is always done, so indices + 1 is only read where it exists
        out = self.profile[np.minimum(indices + 1, self.num_transitions - 1)]  # [B, 10]
        is_done = self.done[indices]
        out[is_done] = self.terminal_profile[self.terminal_row[indices[is_done]]]
        return out


def release_pages(transitions: Transitions) -> None:
    """Unmap the pages a memory-mapped split has faulted in (madvise MADV_DONTNEED on each mapped field).

    Random gathers from a mapped split fault in far more than they read (the kernel maps up to 16
    neighbouring cached pages per fault), and mapped pages count as the process's resident memory: 51,200
    random rows of the 3 GB profile file left 2.1 GB mapped here. The pages stay in the page cache (the next
    gather reads them from memory); only this process's mapping of them goes. Arrays read into memory are
    left alone. Training calls this every few dozen steps."""
    import mmap

    for values in transitions:
        handle = getattr(values, "_mmap", None)
        if isinstance(values, np.memmap) and handle is not None:
            handle.madvise(mmap.MADV_DONTNEED)


class TransitionBatch(NamedTuple):
    """A gathered batch of B transitions, ready for the DQN update (N = seq_len)."""

    item_seq: np.ndarray  # [B, N] int32, 0 = padding
    category_seq: np.ndarray  # [B, N] int32
    behavior_seq: np.ndarray  # [B, N] int8 behaviour tokens (code + 1), 0 = padding
    step_seq: np.ndarray  # [B, N, 20] float32, zero rows at padding
    profile: np.ndarray  # [B, 10] float32
    action: np.ndarray  # [B] int32 item index of the logged next item
    action_behavior: np.ndarray  # [B] int8 behaviour code of the action
    reward: np.ndarray  # [B] float32
    next_item_seq: np.ndarray  # [B, N] int32
    next_category_seq: np.ndarray  # [B, N] int32
    next_behavior_seq: np.ndarray  # [B, N] int8
    next_step_seq: np.ndarray  # [B, N, 20] float32
    next_profile: np.ndarray  # [B, 10] float32
    done: np.ndarray  # [B] float32: 1.0 where the episode ends


def gather_batch(
    transitions: Transitions, indices: np.ndarray, reward: str = "purchase_binary"
) -> TransitionBatch:
    """Materialize the states of the transitions at `indices` ([B] ints) from the event table."""
    t = transitions
    indices = np.asarray(indices, dtype=np.int64)
    table = (t.item_idx, t.category_idx, t.behavior_token, t.step_features)
    state = window_states(*table, t.state_rows(indices), t.profile[indices])
    after = window_states(*table, t.next_state_rows(indices), t.next_profile(indices))
    action_row = t.row[indices]  # [B]
    return TransitionBatch(
        item_seq=state.item_seq,
        category_seq=state.category_seq,
        behavior_seq=state.behavior_seq,
        step_seq=state.step_features,
        profile=state.profile,
        action=t.item_idx[action_row],
        action_behavior=(t.behavior_token[action_row] - 1).astype(np.int8),
        reward=t.reward(reward)[indices],
        next_item_seq=after.item_seq,
        next_category_seq=after.category_seq,
        next_behavior_seq=after.behavior_seq,
        next_step_seq=after.step_features,
        next_profile=after.profile,
        done=t.done[indices].astype(np.float32),
    )


#: Bytes reserved for each .npy header, so the shape can be written after the rows are appended.
NPY_HEADER_BYTES = 128


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header for a C-order array, padded with spaces to NPY_HEADER_BYTES (np.load reads
    any header length; a fixed one lets `SplitWriter` rewrite the shape in place when it closes)."""
    body = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
    head = np.lib.format.MAGIC_PREFIX + bytes([1, 0])
    pad = NPY_HEADER_BYTES - len(head) - 2 - len(body) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} does not fit a {NPY_HEADER_BYTES}-byte .npy header")
    text = (body + " " * pad + "\n").encode("latin1")
    return head + len(text).to_bytes(2, "little") + text


#: Fields of the event table (E rows, row 0 padding); every other field but state_len has T or D rows.
EVENT_TABLE_FIELDS: tuple[str, ...] = ("item_idx", "category_idx", "behavior_token", "step_features")


def empty_transitions(seq_len: int, n_step_features: int = 20, n_profile: int = 10) -> Transitions:
    """A split without transitions: only the padding row of the event table (what a split with no events,
    e.g. valid_days 0, is written as)."""
    z = np.zeros
    return Transitions(
        item_idx=z(1, np.int32), category_idx=z(1, np.int32), behavior_token=z(1, np.int8),
        step_features=z((1, n_step_features), np.float32), row=z(0, np.int32), state_start=z(0, np.int32),
        state_len=np.asarray(seq_len, dtype=np.int32), profile=z((0, n_profile), np.float32),
        reward_purchase=z(0, np.float32), reward_business=z(0, np.float32), done=z(0, bool),
        session_end=z(0, bool), user_id=z(0, np.int64), timestamp=z(0, np.int64), session_index=z(0, np.int32),
        session_position=z(0, np.int32), terminal_row=z(0, np.int32), terminal_profile=z((0, n_profile), np.float32),
    )  # fmt: skip


class SplitWriter:
    """Write one split as a folder of .npy files (one per field), appending the transitions of consecutive
    groups of whole users: each appended part is a split as `build_transitions` cuts it out of those users,
    with its own padding row 0. The parts' row numbers are shifted onto the joined event table, so the
    folder holds exactly what one `build_transitions` over all the users gives, byte for byte.

    Memory is one part at a time. The folder is written under a temporary sibling and renamed on `close`
    (a failure leaves no half-written split); use as a context manager."""

    def __init__(self, path: str | Path, seq_len: int) -> None:
        self.path = Path(path)
        self.seq_len = int(seq_len)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.files: dict[str, object] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, np.dtype] = {}
        self.event_rows = 0  # E so far, the padding row included
        self.terminals = 0  # D so far
        self.parts = 0

    def _write(self, name: str, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values)
        if name not in self.files:
            fh = open(self.tmp / f"{name}.npy", "wb")
            fh.write(b"\0" * NPY_HEADER_BYTES)
            self.files[name], self.dtypes[name] = fh, values.dtype
            self.shapes[name] = (0, *values.shape[1:])
        if values.dtype != self.dtypes[name] or values.shape[1:] != self.shapes[name][1:]:
            raise ValueError(f"{name}: part of {values.dtype} {values.shape} does not extend {self.dtypes[name]} {self.shapes[name]}")
        self.files[name].write(values.tobytes())
        self.shapes[name] = (self.shapes[name][0] + len(values), *self.shapes[name][1:])

    def append(self, part: Transitions) -> None:
        """Add the transitions of the next users (after every user of the earlier parts)."""
        if int(part.state_len) != self.seq_len:
            raise ValueError(f"part has seq_len {int(part.state_len)}, the split {self.seq_len}")
        first = self.parts == 0
        shift = 0 if first else self.event_rows - 1  # the part's row 1 follows the last row written
        if self.event_rows + len(part.item_idx) - (0 if first else 1) > np.iinfo(np.int32).max:
            raise ValueError("the event table outgrows int32 row numbers")
        for name in STORED_FIELDS:
            if name == "state_len":
                continue
            values = getattr(part, name)
            if name in EVENT_TABLE_FIELDS:
                values = values if first else values[1:]
            elif name in ("row", "state_start"):
                values = values + np.int32(shift)
            elif name == "terminal_row":
                values = np.where(values >= 0, values + np.int32(self.terminals), values).astype(np.int32)
            self._write(name, values)
        self.event_rows += len(part.item_idx) - (0 if first else 1)
        self.terminals += len(part.terminal_profile)
        self.parts += 1

    def close(self) -> Path:
        """Finish every file's header and move the folder into place; returns its path."""
        import shutil

        if self.parts == 0:
            self.append(empty_transitions(self.seq_len))
        for name, fh in self.files.items():
            fh.seek(0)
            fh.write(_npy_header(self.dtypes[name], self.shapes[name]))
            fh.close()
        np.save(self.tmp / "state_len.npy", np.asarray(self.seq_len, dtype=np.int32))
        self.files = {}
        shutil.rmtree(self.path, ignore_errors=True)
        self.tmp.rename(self.path)
        return self.path

    def abort(self) -> None:
        import shutil

        for fh in self.files.values():
            fh.close()
        self.files = {}
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def split_path(features_dir: str | Path, split: str) -> Path:
    """The folder where featurize writes the transitions of `split`: one .npy file per field."""
    return Path(features_dir) / split


def save_split(path: str | Path, transitions: Transitions) -> None:
    """Write one split's transitions as the folder `path` (atomically: a temporary folder, then a rename)."""
    with SplitWriter(path, transitions.seq_len) as writer:
        writer.append(transitions)


def load_split(features_dir: str | Path, split: str, mmap: bool = True) -> Transitions:
    """Read the transitions of `split` ("train", "valid" or "test") written by `drlrec featurize`.

    With `mmap` (the default) the arrays are read-only memory maps: nothing is read until a batch gathers
    it, so a split larger than memory loads in no time and the page cache holds what training touches."""
    path = split_path(features_dir, split)
    if not path.is_dir():
        legacy = path.with_suffix(".npz")
        hint = " (an older .npz layout: run `drlrec featurize` again)" if legacy.is_file() else " (run `drlrec featurize` first)"
        raise InputError(f"{path}: no such folder{hint}")
    missing = [name for name in STORED_FIELDS if not (path / f"{name}.npy").is_file()]
    if missing:
        raise InputError(f"{path}: not a drlrec transitions folder (missing {', '.join(f + '.npy' for f in missing)})")
    arrays = {}
    try:
        for name in STORED_FIELDS:
            file = path / f"{name}.npy"
            small = file.stat().st_size <= 1 << 16  # headers, 0-d and empty arrays: read, not mapped
            arrays[name] = np.load(file, mmap_mode=None if small or not mmap else "r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable transitions file {file.name} ({exc.__class__.__name__})") from exc
    t = Transitions(**arrays)
    if t.item_idx.ndim != 1 or len(t.category_idx) != len(t.item_idx) or len(t.step_features) != len(t.item_idx):
        raise InputError(f"{path}: event table fields have different lengths")
    if any(len(getattr(t, f)) != t.num_transitions for f in STORED_FIELDS if f not in EVENT_TABLE_FIELDS + ("state_len", "terminal_profile")):
        raise InputError(f"{path}: transition fields have different lengths")
    return t
