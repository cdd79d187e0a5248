"""Authentication and authorisation: credentials to principals, a pure access policy,
and registry bearer tokens. Knows nothing of HTTP or the database."""
