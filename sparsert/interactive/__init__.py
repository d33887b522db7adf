"""Click-based interactive refinement (2S-ICR): click encoding and simulation, refinement passes, sessions."""
