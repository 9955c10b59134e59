"""User-facing utilities: layer-by-layer precision comparison against transformers
(`eet_triton.compare`, `compare_op`), benchmarks against transformers and torch.compile
(`eet_triton.tools.bench`) and the demo (`eet_triton.tools.demo`).

The model-level `compare` function is `eet_triton.compare` (also `eet_triton.tools.compare.compare`);
it is not re-exported here, so that `eet_triton.tools.compare` stays the module.
"""

from eet_triton.tools.compare import ComparisonTable, Row, Stats, compare_op, error_stats

__all__ = ["ComparisonTable", "Row", "Stats", "compare_op", "error_stats"]
