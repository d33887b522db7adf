"""Click-based interactive refinement (2S-ICR): click encoding and simulation, refinement passes, sessions."""

# The registered click-refinement model used when none is named (CT + PET, soft-tissue sarcoma).
DEFAULT_MODEL = "icr-sts-petct"
