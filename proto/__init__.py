"""cipherome.proto."""
