"""The transitions of one split from the per-event features: which rows belong to it, and their window
offsets, actions, rewards and episode ends."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from drlrec.features.featurize.core import EventFeatures, FeaturizeResult
from drlrec.features.split import SPLITS
from drlrec.features.states import encode_events
from drlrec.features.steps import STEP_DIM
from drlrec.features.transitions import Transitions
from drlrec.features.users import user_index
from drlrec.schema import BUY


class _SplitRows(NamedTuple):
    """Which events of the whole table a split's file holds."""

    table: np.ndarray  # [E - 1] int64 event rows of the event table (after its padding row), sorted
    actions: np.ndarray  # [T] int64 event rows of the split's events
    action_row: np.ndarray  # [T] int32 event-table row of each action (padding row 0 counted)


def _split_rows(events: EventFeatures, code: int, seq_len: int) -> _SplitRows:
    """The split's events plus, before each user's first one, up to `seq_len` earlier events as context."""
    users = events.users
    in_split = events.split == code
    n_users = int(users.ordinal[-1]) + 1
    earlier = np.bincount(users.ordinal, weights=events.split < code, minlength=n_users).astype(np.int64)
    has_split = np.bincount(users.ordinal, weights=in_split, minlength=n_users) > 0
    first_split_row = users.start + earlier[users.ordinal]  # [n]
    rows = np.arange(len(in_split), dtype=np.int64)
    context = (events.split < code) & has_split[users.ordinal] & (rows >= first_split_row - seq_len)
    included = in_split | context
    actions = np.flatnonzero(in_split)
    # table row of an included event = how many included events up to it (row 0 is padding)
    action_row = np.cumsum(included, dtype=np.int32)[actions]
    return _SplitRows(table=np.flatnonzero(included), actions=actions, action_row=action_row)


def build_transitions(result: FeaturizeResult, split: str, selected: _SplitRows | None = None) -> Transitions:
    """One split's transitions (see drlrec.features.transitions for the layout and shapes); `selected` is
    `_split_rows` of the split when the caller has it already."""
    ev = result.events
    n_steps = result.seq_len
    if selected is None:
        selected = _split_rows(ev, SPLITS.index(split), n_steps)
    table, actions = selected.table, selected.actions
    n_rows = len(table) + 1  # E, with the padding row 0

    item_idx = np.zeros(n_rows, dtype=np.int32)
    item_idx[1:] = ev.item_idx[table]
    category_idx = np.zeros(n_rows, dtype=np.int32)
    category_idx[1:] = ev.category_idx[table]
    behavior_token = np.zeros(n_rows, dtype=np.int8)
    behavior_token[1:] = ev.behavior[table] + 1
    steps = np.zeros((n_rows, STEP_DIM), dtype=np.float32)  # [E, 20]
    block_rows = 1 << 16  # the column-wise writes into a [block_rows, 20] block stay in cache
    for lo in range(0, len(table), block_rows):
        rows = table[lo : lo + block_rows]
        encode_events(
            ev.item_idx[rows],
            ev.category_idx[rows],
            ev.behavior[rows],
            ev.time_gap[rows],
            ev.users.position[rows],
            ev.profile[rows],  # [b, 10]
            result.globals.stats,
            out=steps[1 + lo : 1 + lo + len(rows)],
        )

    # event-table row of every action, and of its user's first row in the table
    row = selected.action_row  # [T]
    table_users = user_index(ev.user_id[table])
    first_row = (table_users.start[row - 1] + 1).astype(np.int32)  # [T]: the floor of every state's window

    behavior = ev.behavior[actions]
    done = ev.episode_end[actions]
    terminal_rank = np.cumsum(ev.episode_end) - 1  # [n] position among all episode ends
    terminal_row = np.full(len(actions), -1, dtype=np.int32)
    done_actions = actions[done]
    terminal_row[done] = np.arange(len(done_actions), dtype=np.int32)
    return Transitions(
        item_idx=item_idx,
        category_idx=category_idx,
        behavior_token=behavior_token,
        step_features=steps,
        row=row,
        state_start=first_row,
        state_len=np.asarray(n_steps, dtype=np.int32),
        profile=ev.profile[actions],
        reward_purchase=(behavior == BUY).astype(np.float32),
        reward_business=result.reward_weights[behavior],
        done=done,
        session_end=ev.session_end[actions],
        user_id=ev.user_id[actions],
        timestamp=ev.timestamp[actions],
        session_index=ev.session_index[actions],
        session_position=ev.session_position[actions],
        terminal_row=terminal_row,
        terminal_profile=ev.terminal_profile[terminal_rank[done_actions]],
    )
