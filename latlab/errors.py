"""The one exception type for mistakes a user can fix (bad file, unknown name, missing runtime)."""


class LatlabError(Exception):
    """Printed by the CLI as a single line with exit code 2; anything else is a bug and keeps its traceback."""
