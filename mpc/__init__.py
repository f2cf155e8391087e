"""cipherome.mpc."""
