"""Optimisation back-end: linear programmes handed to HiGHS."""
