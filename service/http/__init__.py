"""The HTTP face: the API routes, their bodies, bearer tokens."""
