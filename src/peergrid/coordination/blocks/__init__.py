"""The schedule LP's blocks: the community's connection, one module per asset, the feeder's rows.

Each block adds its columns and rows to an `optim.highs.LpModel` and reads its part of a
solution back; `coordination.model` puts them together.
"""
