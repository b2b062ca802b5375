"""SessionValidator: express-session cookie verification as a gRPC service."""

__version__ = "0.1.0"
