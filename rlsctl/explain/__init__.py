"""`rlsctl explain`: the project's representative queries, planned as each principal under RLS and
compared with the same query and a hand-written filter (docs/performance.md, "The plan-aware check").

- `statement`: a declared query's SQL, its `:name` parameters numbered, one statement checked;
- `declarations`: the `explain:` section checked offline (file and line on every error);
- `principals`: the declared principals found in the data, and becoming one;
- `plans`: reading EXPLAIN's JSON and the checks; `run`: the run; `report`: text and JSON.
"""
