"""drlrec: train, ship and watch a DQN-LSTM sequential recommender on Taobao-style behaviour logs."""

__version__ = "0.1.0"
