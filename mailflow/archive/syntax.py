"""The search syntax as the user reads it (``mailflow search --help``, ``#help``);
kept apart, without imports, so that the CLI can show it without loading the search."""

HELP = """\
Search syntax

  word  "a phrase"  harass*        words match any field; * matches word beginnings
  a b   a AND b                    both (AND is implied between terms)
  a OR b    NOT a    -a    ( )     either; without; grouping
  from:ADDRESS   from:WORD         the sender (an address matches exactly)
  to:ADDRESS     to:WORD           a recipient (To or Cc)
  subject:WORD   body:WORD         the subject; the new text of a mail
  quoted:WORD                      the quoted part of a reply
  case:2026-0001  case:"Amber Fox" a case, by id or code name
  kind:KIND                        report reply member call note draft sent case
                                   (also forward, held, bounce; report includes forward)
  person:ADDRESS  person:WORD      anyone in any role on the case
  status:STATUS                    the case's status (open, closed, ...)
  date:2026-01-01..2026-03-01      a date range (both ends included)
  date:2026-02  date:2026          one month, one year
  date:2w..  date:..3M  date:today relative: h hours, d days, w weeks, M months, y years
Words rank the results by relevance; a query of addresses, "quoted phrases" and
conditions alone lists them newest first.
Operators are written in capitals; quote a phrase to search for a word like "OR"."""
