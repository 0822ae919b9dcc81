"""The clocks of the guidelines: the rules (:mod:`.policy`), the durable alarms
(:mod:`.alarms`), the scheduler that fires them (:mod:`.scheduler`) and the members'
daily digest (:mod:`.digest`)."""
