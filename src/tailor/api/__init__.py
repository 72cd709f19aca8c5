"""The HTTP API: FastAPI app, one router per engine, auth, limits."""
