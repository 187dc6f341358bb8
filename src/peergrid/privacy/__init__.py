"""Privacy of what the community publishes (docs/privacy.md).

Disclosure control (minimum group size and dominance) for every published cell, and optional
differentially private releases of community aggregates with a budget tracked per run.

Modules:
- `disclosure`: the k-households and dominance rules over published cells (numpy only);
- `budget`: the run's privacy budget, basic sequential composition, stored as JSON (stdlib only);
- `dp`: user-level DP releases of community profiles with OpenDP (the `privacy` extra), and the
  utility-versus-ε curve.

Nothing is imported here, so disclosure control and the budget work without OpenDP installed.
"""
