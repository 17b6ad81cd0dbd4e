"""A reference vehicle simulator: every vehicle service over gRPC, with state and validation."""
