"""Features: temporal split, vocabularies, sessions, user profiles (10-d), step encodings (20-d), transitions.

split.py        SPLITS, split_boundaries, assign_split
vocab.py        Vocab (0 pad, 1 unknown; encode/decode via np.searchsorted), fit_vocab
users.py        UserIndex: user runs of a (user, time)-sorted table
sessions.py     sessionize: session index and position per event
profile.py      PROFILE_FEATURES, running_counts, profiles_at, user_profiles (vectorized over a table)
steps.py        STEP_FEATURES, TrainStats, step_features
states.py       the one state builder: StateBatch, Histories, build_states, encode_events, window_states
transitions.py  Transitions, TransitionBatch, gather_batch, save_split, load_split
featurize.py    featurize, build_transitions, featurize_report, TrainGlobals, load_events
"""
