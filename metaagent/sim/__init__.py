"""The simulator: the real scheduler on virtual time, its inputs, results and pool search."""
