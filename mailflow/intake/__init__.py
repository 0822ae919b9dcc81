"""The ways in.  Every message is committed to the spool (:mod:`.spool`) before
anyone is told "accepted": by the SMTP/LMTP listener (:mod:`.listener`), the IMAP
poller (:mod:`.imap`), ``mailflow ingest`` and ``mailflow import`` (:mod:`.importer`)."""
