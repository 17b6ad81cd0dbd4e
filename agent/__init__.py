"""On-device agent that turns driver commands into vehicle gRPC calls."""

__version__ = "0.1.0"
