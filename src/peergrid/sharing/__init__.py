"""Sharing a community's savings: allocation rules (`rules`) and the cooperative games behind
them (`games`: Shapley value, core, least core)."""
