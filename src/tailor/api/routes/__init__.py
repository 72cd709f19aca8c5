"""One router per resource; each route resolves its caller and calls the serving state."""
