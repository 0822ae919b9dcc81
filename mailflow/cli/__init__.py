"""The command line: ``mailflow`` and its subcommands (:mod:`.main`), ``serve``, the
checks of ``mailflow check`` and ``mailflow demo``."""
