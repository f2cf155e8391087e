"""cipherome.protocols."""
