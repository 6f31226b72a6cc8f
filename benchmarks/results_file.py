"""The benchmarks' results files: in the package (ganforge.bench.results)."""
from ganforge.bench.results import merge_result, speed_entries, speed_key, update_results  # noqa: F401
