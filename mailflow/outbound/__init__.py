"""The way out: the durable queue (:mod:`.queue`) that every part hands its mail to,
in the transaction of the change that caused it, and its delivery with retries
(:mod:`.delivery`) through the relay or into a Maildir (:mod:`.transports`)."""
