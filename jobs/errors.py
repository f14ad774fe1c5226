class PermanentError(Exception):
    """An error that retrying cannot fix: the job goes straight to the dead-letter queue."""
