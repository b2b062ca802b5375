"""Client package for the SessionValidator service.

The generated protobuf and gRPC modules live in :mod:`sessionvalidator.v1`.
"""
