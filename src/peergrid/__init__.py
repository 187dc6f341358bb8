"""peergrid: peer-to-peer energy sharing in connected communities."""

__version__ = "0.1.0"
