"""Urgent triage: words and patterns of rules/triage.toml mark a new report urgent;
every member on the case is alerted at once with a subject of its own, and the
acknowledgement tells the reporter whom to call.  End to end through real SMTP."""

from __future__ import annotations

from mailflow import rules
from mailflow.config import Config
from mailflow.pipeline.handlers import triage
from mailflow.testing import CHAIR, M1, M2, MEMBERS, CaptureRelay, MailflowServer, make_mail

REPORTER = "rita@people.test"
CONDUCT = "conduct@example.org"
EMERGENCY = "112 (Europe) or 911 (US)"
SHIPPED = rules.load(Config())


def labels(text: str) -> list[str]:
    return [h.label for h in triage.find(SHIPPED, text)]


def test_the_shipped_words_and_patterns():
    assert labels("He wrote: I'll  kill you.") == ["threat of violence"]
    assert labels("they posted my home address on the forum") == ["doxxing"]
    assert labels("I don't want to live like this") == ["self-harm"]
    assert labels("It is happening right now at the sprint") == ["event in progress"]
    # Whole words only, and ordinary heated words are not urgent.
    assert labels("a photo shoot; the gunicorn logs; a killer feature") == []
    assert triage.problems(SHIPPED) == []
    assert triage.problems({"triage": {"categories": {"x": {"patterns": ["(unclosed"]}}}})


def test_patterns_match_in_any_case_across_line_breaks():
    assert labels("He said he KNOWS\r\n   WHERE you live.") == ["threat of violence"]
    custom = {"triage": {"categories": {"x": {"label": "x", "patterns": [
        r"\bcode (?P<n>\d)(?P=n)\b", r"\bPIN\b"]}}}}
    assert triage.problems(custom) == []
    assert [h.matched for h in triage.find(custom, "Code 77 now")] == ["code 77"]
    assert triage.find(custom, "code 78") == []
    assert [h.matched for h in triage.find(custom, "my pin")] == ["pin"]
    clash = {"triage": {"categories": {"x": {"patterns": ["(?P<a>x)", "(?P<a>y)"]}}}}
    assert "one alternation" in triage.problems(clash)[0]


def urgent_server(tmp_path, relay: CaptureRelay) -> MailflowServer:
    server = MailflowServer(tmp_path, relay.port)
    text = server.config.read_text()
    server.config.write_text(text.replace(
        "[committee]\n", f'[committee]\nemergency_contact = "{EMERGENCY}"\n', 1))
    return server.start()


def test_an_urgent_report_alerts_every_member_at_once(tmp_path, relay):
    with urgent_server(tmp_path, relay) as server:
        server.send(make_mail(REPORTER, CONDUCT, "Please help",
                              "He says he knows where I live and that he will hurt me.\n"
                              "He is still here at the venue."), REPORTER, [CONDUCT])
        alerts = relay.wait_for(lambda c: "URGENT" in c.msg["Subject"], count=3, what="alerts")
        relay.wait_for(lambda c: "New report" in c.msg["Subject"], count=3, what="copies")
        assert sorted(c.rcpts[0] for c in alerts) == sorted(MEMBERS)
        subject = alerts[0].msg["Subject"]
        assert "URGENT: threat of violence, doxxing, event in progress" in subject
        assert "rita" not in subject and "help" not in subject.lower()
        assert 'knows where I live' in alerts[0].body() and "24 hours" in alerts[0].body()
        # The alerts are queued ahead of the ordinary copies, in the same step.
        kinds = [k for (k,) in server.query("SELECT kind FROM outbound WHERE kind IN "
                                            "('urgent', 'relay') ORDER BY id")]
        assert kinds == ["urgent"] * 3 + ["relay"] * 3
        ack = relay.wait_for(lambda c: REPORTER in c.rcpts, what="acknowledgement")[0]
        assert f"please contact {EMERGENCY} now" in " ".join(ack.body().split())
        [case] = server.cli_json("cases")
        assert case["urgent"] == 1
        assert sorted(d["clock"] for d in server.cli_json("deadlines")
                      if d["case_id"] == case["id"]) == ["acted-alone", "receipt", "resolution"]


def test_an_ordinary_report_is_not_urgent_and_a_named_member_is_not_alerted(server, relay):
    server.send(make_mail(REPORTER, CONDUCT, "Rude reply", "He called my patch garbage."),
                REPORTER, [CONDUCT])
    server.send(make_mail(REPORTER, CONDUCT, "Threat",
                          f"The member {M2} threatened to kill me."), REPORTER, [CONDUCT])
    relay.wait_for(lambda c: "New report" in c.msg["Subject"], count=5, what="copies")
    alerts = relay.wait_for(lambda c: "URGENT" in c.msg["Subject"], count=2, what="alerts")
    assert sorted(c.rcpts[0] for c in alerts) == sorted([CHAIR, M1])
    acks = relay.wait_for(lambda c: REPORTER in c.rcpts, count=2, what="acknowledgements")
    urgent = {c["id"]: bool(c["urgent"]) for c in server.cli_json("cases")}
    assert {urgent[a.msg["X-Mailflow-Case"]]: "emergency" in a.body() for a in acks} == \
        {False: False, True: True}
    assert list(urgent.values()) == [False, True]
