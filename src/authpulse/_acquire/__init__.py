"""Getting tokens: provider discovery and the login flows that sign a user in."""
