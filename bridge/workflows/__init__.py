"""What the scripts share: corpora, best-of-N pair building, the simulated world, the evaluation report, and common
helpers (model loading, argument checks, UsageError)."""
