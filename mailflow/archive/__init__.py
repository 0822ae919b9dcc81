"""The read side of the archive: search (:mod:`.query`, :mod:`.plan`, :mod:`.search`),
the views of ``mailflow cases`` and ``case show`` (:mod:`.views`), the exported dossier
(:mod:`.dossier`), reindexing and retention."""
