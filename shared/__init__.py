"""The call-tracking product's domain library, shared by every function."""
