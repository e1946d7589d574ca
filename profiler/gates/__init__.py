"""Gates: compare two folders (compare), gate a folder against a baseline (check), same-run
A/B benchmarks of two revisions (bench, bench_probe), and golden values of the
deterministic metrics (golden).
"""
