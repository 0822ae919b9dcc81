"""The ``#command`` language members write in their replies: how a command line is read
(:mod:`.language`), what a command is and runs with (:mod:`.spec`), and ``#help``
(:mod:`.help`).  The commands themselves live with what they change."""
