"""Processing after intake: each spooled message runs through the handler chain of
:data:`mailflow.app.HANDLERS` (:mod:`.runner`), with a :class:`.context.Context`
that each step reads and adds to.  The steps are the modules of :mod:`.handlers`."""
