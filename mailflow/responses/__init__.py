"""Mail that leaves the committee: templated drafts that only the chair's ``#confirm``
sends (:mod:`.drafts`, :mod:`.draft_commands`), the identity check every such mail
passes (:mod:`.redaction`), and the officers' final report (:mod:`.finalreport`)."""
