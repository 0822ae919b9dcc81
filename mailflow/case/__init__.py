"""The committee's domain: cases and the people on them, the record the guidelines ask
for, recusal, consensus, the clear-and-severe fast path, mediation, the reporter's
consultation, sanctions, off-list calls and notes, event reports and grievances."""
