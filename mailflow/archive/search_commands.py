"""``#search``: the archive searched by mail, from the asking member's view (never a
case they are recused from); the search itself is :mod:`mailflow.archive.search`."""

from __future__ import annotations

from mailflow.archive.query import SearchError
from mailflow.archive.search import format_results, run
from mailflow.commands.spec import CommandError, Invocation, command

MAIL_SEARCH_LIMIT = 20


@command("search", needs_case=False,
         summary="search the archive; the results come back in the transcript "
         "(never a case you are recused from)",
         usage="#search <query>   (the syntax of `mailflow search --help`)",
         example='#search from:alice@example.org "keynote slides" date:2026')
def _search(inv: Invocation) -> str:
    try:
        data = run(inv.db, inv.cmd.args, as_member=inv.actor, limit=MAIL_SEARCH_LIMIT)
    except SearchError as e:
        raise CommandError(f"{e} (send #help search for the syntax)") from None
    # The transcript now quotes these cases: purging one of them removes it.
    inv.ctx.quoted_cases.update(r["case"] for r in data["results"] if r["case"])
    return format_results(data)
