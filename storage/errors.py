class StorageError(ValueError):
    """The storage URL, database or study is not usable. The message names the field and the fix."""
