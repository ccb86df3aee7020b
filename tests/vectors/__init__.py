"""Golden vectors for every persisted or signed format (see README.md)."""
