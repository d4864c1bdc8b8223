"""One module per ``paralign`` sub-command, each with ``register(subparsers)`` and ``run(args) -> int``."""
