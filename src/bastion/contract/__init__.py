"""The HTTP contract as pydantic models: what routes accept and answer, and what the SDK parses.

Pure data (pydantic only, no server imports), so the server's routes and services and the client SDK
share one definition of every request and response. The OpenAPI document is generated from these.
"""
