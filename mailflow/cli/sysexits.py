"""Exit codes, from sysexits.h: what an MTA and a shell script understand."""

EX_OK, EX_USAGE, EX_DATAERR, EX_TEMPFAIL, EX_CONFIG = 0, 64, 65, 75, 78
