"""Federation with other DVID-speaking servers: reading their committed versions lazily and
pushing local branches back. Nothing is federated yet; this package is where it will live."""
