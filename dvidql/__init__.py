"""dvidql: a versioned connectomics data service with GraphQL and DVID-compatible HTTP APIs."""

__version__ = "0.1.0"

__all__ = ["__version__"]
