"""GraphQL resolvers: parse arguments, call the Service, RepoManager and datatype operations,
and hand back domain objects (repos, nodes, instances, bytes) for the schema types to wrap.

Every policy check (read-only mode, admin token, version locks) lives in the Service and the
RepoManager; resolvers only call them.
"""
