"""Authentication and authorization: passwords, API keys, JWT, roles, lockout, rate limits."""
