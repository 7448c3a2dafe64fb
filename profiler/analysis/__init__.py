"""Analysis: pure functions from run records to the figures every output shows.

Grouping, per-group summaries, statistics, cold against warm, the diagnosis, the
ranking of ways of loading, and the metrics and verdicts of ``llmprof compare``.
Nothing here imports torch.
"""
