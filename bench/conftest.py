"""Benchmarks run with: python -m pytest bench/ --benchmark-only -p no:cacheprovider -o addopts=''"""
