"""Recommenders behind one interface (fit / score / recommend): the DQN-LSTM and the baselines."""
