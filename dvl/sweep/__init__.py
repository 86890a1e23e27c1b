"""Sweeps of scaled networks: EfficientNet's compound-scaling search.

* ``candidates``: the φ = 1 grid under α·β²·γ² ≈ 2 and the single-dimension
  scalings at matched MACs (Tan & Le 2019, Sec. 3.3, Figure 8, Table 3);
* ``strategies``: other scalings at equal cost (uniform, dWr, given
  exponents) and matching one to a counted cost;
* ``laws``: a saturating law of error against cost, fitted on φ < k and
  judged at φ = k; ``star``: (α, β, γ) from one-dimension-at-a-time runs;
* ``trials``: a trial's train config, id and cost, planned before training;
* ``results``: ``sweep.json``, ``results.jsonl`` and ``results.csv``;
* ``executors`` and ``worker``: sequential, a local process pool, or Ray;
* ``search``: the ``scaling_search`` job (search, scale-up, report);
* ``analysis`` and ``report``: the ``scaling_report`` job;
* ``table3``: the ``scaling_table3`` job, Table 3's rows trained.
"""
