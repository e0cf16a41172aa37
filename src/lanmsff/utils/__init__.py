"""Small shared helpers: atomic file writes and progress bars."""
