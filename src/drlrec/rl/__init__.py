"""Reinforcement learning around the recommender: logged transitions, replay, the user simulator and the environments."""
