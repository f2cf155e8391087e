"""cipherome.genomics."""
