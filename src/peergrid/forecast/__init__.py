"""Forecasters of each participant's demand and PV, issued at gate closure (one module each)."""
