"""Built-in latlab backends. Each registers under the ``latlab.backends`` entry point like any plugin would."""
