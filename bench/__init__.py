"""QA benchmarks: `python -m bench`. Results are JSON (and PNG plots) under bench/results/."""
