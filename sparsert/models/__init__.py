"""Networks and the registry of trained weights."""
