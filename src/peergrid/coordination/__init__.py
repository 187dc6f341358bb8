"""The coordinated market: a central schedule of the whole community, and its cooperative game."""
