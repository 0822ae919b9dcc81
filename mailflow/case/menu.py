"""The guidelines' menu of responses, and the items the committee decides by
consensus, in words: what ``#propose`` takes, and how the case file, the digests and
the reports name a decision."""

from __future__ import annotations

from typing import Any

# The guidelines' menu of responses: key (as written after #propose) -> wording.
RESPONSES = {
    "no-action": "no further action",
    "mediation": "voluntary mediation",
    "public-reminder": "a public reminder of the expected behaviour",
    "private-reprimand": "a private reprimand",
    "public-reprimand": "a public reprimand",
    "apology-request": "a request for an apology",
    "hiatus": "a mutually agreed hiatus",
    "cooling-off": "a mandatory cooling-off period",
    "temporary-ban": "a temporary ban",
    "permanent-ban": "a permanent ban",
    "leave-event": "a request to leave the event",
}
# The kinds of consensus item: a response from the menu, the sign-off of the
# clear-and-severe fast path, the finding that a report was false or abusive.
RESPONSE, SIGNOFF, FALSE_REPORT = "response", "signoff", "false-report"


def describe(response: str, detail: str = "") -> str:
    return RESPONSES.get(response, response) + (f" ({detail})" if detail else "")


def what(proposal: dict[str, Any]) -> str:
    """A proposal of any kind, in words."""
    if proposal["kind"] == SIGNOFF:
        return "sign-off of the clear-and-severe fast path"
    if proposal["kind"] == FALSE_REPORT:
        return f"finding the report false or abusive ({proposal['detail']})"
    return describe(proposal["response"], proposal["detail"])
