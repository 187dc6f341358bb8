"""Privacy of what the community publishes (docs/privacy.md).

Disclosure control (minimum group size and dominance) for every published cell, and optional
differentially private releases of community aggregates with a budget tracked per run.
"""
