"""The clear-and-severe fast path, over real SMTP: the moderators of each channel named
are instructed to disconnect the originator, the notices saying "disconnected" go
only once that instruction is confirmed, and the ban is interim, ending with the
committee's review of the case or its sign-off."""

from __future__ import annotations

import re
from pathlib import Path

from casekit import MODERATORS, ORIGINATOR, REPORTER, leaks, open_case, start_server

from mailflow.testing import CHAIR, M1, M2, CaptureRelay, MailflowServer, make_mail

FORUM_MODS, CHAT_OPS = "forum-admins@mods.test", "chat-ops@mods.test"
CHANNELS = f'[moderators]\nforum = ["{FORUM_MODS}"]\nChat = ["{CHAT_OPS}"]\n'
SEVERE = f"#originator Sam Sharp <{ORIGINATOR}>\n#severe forum, chat, irc: threatened to " \
         "hurt another contributor after the meetup"


def with_rules(tmp_path: Path, relay: CaptureRelay, **files: str) -> MailflowServer:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in files.items():
        (rules / f"{name}.toml").write_text(text)
    return start_server(tmp_path, relay, extra=f'[paths]\nrules = "{rules}"\n')


def words(text: str) -> str:
    return " ".join(text.split())


def test_moderators_are_instructed_before_anyone_is_told_of_a_disconnection(tmp_path, relay):
    with with_rules(tmp_path, relay, channels=CHANNELS) as server:
        case = open_case(server, relay)
        t = case.command(M1, SEVERE)
        assert "All commands were applied" in t
        # One instruction per group of moderators: the map's, then committee.moderators
        # for the channel the map does not know.
        for channels, draft in (("forum", 1), ("chat", 2), ("irc", 3)):
            assert f"instruction to the moderators of {channels} drafted (draft {draft})" in t
        assert "notice to the reporter drafted (draft 4)" in t
        assert f"notice to {ORIGINATOR} drafted (draft 5)" in t

        # The notices say "disconnected": not before the instructions are confirmed.
        t = case.confirm(4)
        assert "Error: draft 4 says that the person has been disconnected: first confirm the " \
               "instruction to the moderators, draft 1 (forum); draft 2 (chat); draft 3 (irc)" in t
        t = case.confirm(1)
        assert "Error" not in t
        assert "draft 2 (chat); draft 3 (irc)" in case.confirm(5)
        # All or nothing: a notice above its instruction in one mail sends nothing.
        t = case.confirm(5, 2, 3)
        assert "Error: draft 5 says" in t and "Nothing in this message was applied." in t
        assert server.query("SELECT id, state FROM drafts ORDER BY id") == [
            (1, "sent"), (2, "pending"), (3, "pending"), (4, "pending"), (5, "pending")]
        t = case.confirm(2, 3, 4, 5)
        assert "All commands were applied" in t

        forum = relay.wait_for(lambda c: c.rcpts == [FORUM_MODS], what="forum instruction")[0]
        body = words(forum.body())
        assert "Please disconnect, at once, from forum: Sam Sharp <sam.sharp@people.test>" in body
        assert "until the committee's review of the case" in body
        assert leaks(forum) == [] and "threatened" not in body
        relay.wait_for(lambda c: c.rcpts == [CHAT_OPS] and "from chat:" in words(c.body()),
                       what="chat instruction")
        relay.wait_for(lambda c: c.rcpts == [MODERATORS] and "from irc:" in words(c.body()),
                       what="the fallback moderators' instruction")
        notice = relay.wait_for(lambda c: c.rcpts == [REPORTER] and "disconnected" in
                                c.msg["Subject"], what="the reporter's notice")[0]
        assert "disconnected from forum, chat, irc" in words(notice.body())
        assert "This lasts until the committee's review of the case" in words(notice.body())
        # The instructions were queued before the notices.
        sent = [r[0] for r in server.query(
            "SELECT r.rcpt FROM outbound o JOIN outbound_rcpt r ON r.outbound_id = o.id "
            "WHERE o.kind = 'response' ORDER BY o.id")]
        assert sent == [FORUM_MODS, CHAT_OPS, MODERATORS, REPORTER, ORIGINATOR]


def test_the_interim_ban_ends_with_the_review_of_the_case(tmp_path, relay):
    with with_rules(tmp_path, relay, channels=CHANNELS) as server:
        case = open_case(server, relay)
        case.command(M1, SEVERE)
        [ban] = server.cli_json("bans")["bans"]
        assert (ban["status"], ban["end"], ban["permanent"], ban["interim"]) == \
            ("current", "the committee's review of the case", False, True)
        case.command(M1, "#propose temporary ban: six months from the forum and the chat")
        case.command(M2, "#vote agree")
        case.command(CHAIR, "#vote agree")
        notice = relay.wait_for(lambda c: c.rcpts == [M2] and "Consensus reached" in
                                c.msg["Subject"], what="consensus")[0]
        assert "The interim ban of the fast path (#1) ended with this decision" in \
            words(notice.body())
        [ban] = server.cli_json("bans")["bans"]
        assert ban["status"] == "expired" and ban["ends_at"]
        assert server.query("SELECT action FROM audit WHERE action = 'interim ban ended'") == \
            [("interim ban ended",)]


def test_the_interim_ban_can_end_with_the_sign_off_or_never(tmp_path, relay):
    with with_rules(tmp_path, relay, channels=CHANNELS,
                    workflow='interim_ban = "signoff"\n') as server:
        case = open_case(server, relay)
        t = case.command(M1, SEVERE)
        assert "until the committee's sign-off of the fast path" in t
        for member in (M1, M2, CHAIR):
            case.command(member, "#signoff")
        assert server.cli_json("bans")["bans"][0]["status"] == "expired"
    (tmp_path / "rules" / "workflow.toml").write_text('interim_ban = "permanent"\n')
    with start_server(tmp_path, relay, extra=f'[paths]\nrules = "{tmp_path / "rules"}"\n') \
            as server:
        case = open_case(server, relay, body="Kim threatened me in the forum.")
        case.command(M1, "#originator Kim <kim@people.test>\n#severe forum: threats")
        [ban] = [b for b in server.cli_json("bans")["bans"] if b["person"] == "kim@people.test"]
        assert (ban["status"], ban["end"], ban["permanent"]) == ("current", "permanent", True)


def test_no_moderators_for_a_channel_refuses_and_records_nothing(tmp_path, relay):
    with MailflowServer(tmp_path, relay.port).start() as server:
        case = open_case(server, relay)
        t = case.command(M1, SEVERE)
        assert "Error: no moderators are known for forum, chat, irc: add them to " \
               "rules/channels.toml" in t
        assert server.query("SELECT count(*) FROM bans") == [(0,)]
        assert server.query("SELECT count(*) FROM drafts") == [(0,)]


def test_check_names_a_bad_channel_map_and_interim_ban(tmp_path, relay):
    server = MailflowServer(tmp_path, relay.port, extra=f'[paths]\nrules = "{tmp_path}/rules"\n')
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "channels.toml").write_text(
        '[moderators]\nforum = "mods@example.org"\nchat = ["not an address"]\nall = ["a@b.c"]\n')
    (tmp_path / "rules" / "workflow.toml").write_text('interim_ban = "forever"\n')
    out = server.cli("check", check=False).stdout.decode() + \
        server.cli("check", check=False).stderr.decode()
    for problem in ("rules/channels.toml: moderators.forum: expected a list of email addresses",
                    "rules/channels.toml: moderators.chat: expected a list of email addresses",
                    "rules/channels.toml: moderators.all: not a channel name",
                    "rules/workflow.toml: interim_ban: 'forever' is not one of review, "
                    "signoff, permanent"):
        assert problem in out, problem


def test_a_moderators_reply_comes_back_to_the_case(tmp_path, relay):
    # The instruction asks the moderators to reply once done: their answer joins the case.
    with with_rules(tmp_path, relay, channels=CHANNELS) as server:
        case = open_case(server, relay)
        case.command(M1, SEVERE)
        case.confirm(1)
        forum = relay.wait_for(lambda c: c.rcpts == [FORUM_MODS], what="instruction")[0]
        reply_to = forum.msg["Reply-To"]
        assert re.match(r"conduct\+\S+@example\.org", reply_to)
        server.send(make_mail(FORUM_MODS, reply_to, "Re: " + forum.msg["Subject"],
                              "Done: the account is suspended."), FORUM_MODS, [reply_to])
        relayed = relay.wait_for(lambda c: c.rcpts == [M2] and "account is suspended" in
                                 c.body(), what="the moderators' answer relayed")[0]
        assert case.id in relayed.msg["Subject"]


def test_an_archive_from_before_keeps_its_bans_as_they_were(tmp_path):
    from mailflow import config, store
    from mailflow.case import sanctions
    from mailflow.store import migrations

    cfg = config.from_dict({"storage": {"path": str(tmp_path / "archive")}})
    cfg.archive_dir.mkdir(parents=True)
    db = store.connect(cfg.db_path)
    earlier = [m for m in migrations.ALL if not m[0].startswith("due_process_")]
    migrations.migrate(db, store.transaction, earlier)
    db.execute("INSERT INTO cases (id, year, seq, status, kind, subject, codename, opened_at, "
               "updated_at) VALUES ('2026-0001', 2026, 1, 'open', 'report', '', 'Amber Fox', "
               "'2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')")
    db.execute("INSERT INTO bans (case_id, person, scope, starts_at, ends_at, reason, actor, "
               "created_at) VALUES ('2026-0001', 'sam@people.test', 'all', "
               "'2026-01-01T00:00:00Z', NULL, 'threats', 'chair@example.org', "
               "'2026-01-01T00:00:00Z')")
    assert store.upgrade(db) == ["due_process_0001_interim_bans_consents_instructions"]
    [ban] = sanctions.bans(db)
    assert (ban["permanent"], ban["interim"], ban["end"]) == (True, False, "permanent")
    assert sanctions.end_interim(db, "2026-0001", "review") == []
