"""zayton."""
