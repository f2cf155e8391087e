"""Simulating the demo study (1,500 individuals x 3,000 variants, 3 sites): part of every `cipherome demo`.

Target: under 3 s on one core (it was a timed assertion in tests/test_simulate.py before)."""
from cipherome.genomics import simulate


def test_simulate_demo(benchmark):
    s = benchmark.pedantic(simulate.simulate_demo, rounds=3, iterations=1)
    assert s.genotypes.shape == (3000, 1500)
