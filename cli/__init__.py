"""cipherome.cli."""
