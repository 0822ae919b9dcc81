"""Helpers for the tests of the clocks: an archive driven in process through the real
intake, pipeline and scheduler, with the time set by ``MAILFLOW_FAKE_NOW`` (as a
server's is), and members writing commands to their signed reply addresses."""

from __future__ import annotations

import email
import json
import re
from datetime import date
from pathlib import Path

import pytest

from mailflow import app, config, store, timestamps
from mailflow.clocks import scheduler
from mailflow.clocks.policy import Policy
from mailflow.intake.spool import Envelope, commit_one
from mailflow.pipeline import runner
from mailflow.testing import CHAIR, make_mail, write_config

REPORTER = "rita@people.test"


class Archive:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, rules: str = "",
                 committee: str = ""):
        rules_dir = tmp / "rules"
        rules_dir.mkdir()
        (rules_dir / "clocks.toml").write_text(rules)
        path = write_config(tmp / "mailflow.toml", listen_port=2, relay_port=None,
                            archive=tmp / "archive", extra=f'[paths]\nrules = "{rules_dir}"\n')
        if committee:
            text = path.read_text().replace("[committee]\n", f"[committee]\n{committee}\n")
            path.write_text(text)
        self.monkeypatch = monkeypatch
        self.cfg = config.load(str(path))
        self.db = store.open_db(self.cfg.db_path)
        self.svc = app.services(self.cfg)

    def at(self, when: str) -> None:
        self.monkeypatch.setenv("MAILFLOW_FAKE_NOW", when)

    def deliver(self, raw: bytes, sender: str, rcpts: list[str]) -> None:
        commit_one(self.cfg.db_path, raw, Envelope("smtp", sender, rcpts))
        runner.drain(self.db, self.svc)

    def report(self, body: str = "Someone keeps insulting me in the chat.",
               sender: str = REPORTER, subject: str = "Insults") -> str:
        self.deliver(make_mail(sender, "conduct@example.org", subject, body), sender,
                     ["conduct@example.org"])
        return self.db.execute("SELECT id FROM cases ORDER BY opened_at DESC, seq DESC"
                               ).fetchone()[0]

    def member(self, member: str, case_id: str, text: str) -> str:
        """A member's mail to their signed reply address; returns the transcript of its
        commands ("" if it had none)."""
        token = self.svc.signer.member_token(case_id, member, date(2099, 1, 1))
        to = f"committee+{token}@example.org"
        before = len(self.sent("transcript"))
        self.deliver(make_mail(member, to, f"Re: [coc #{case_id}]", text), member, [to])
        return "".join(t["body"] for t in self.sent("transcript")[before:])

    def confirm(self, case_id: str, draft: int) -> str:
        """The chair confirms with the #confirm line (and code) of the draft's mail."""
        line = next(line for mail in self.sent("draft") for line in mail["body"].splitlines()
                    if line.startswith(f"#confirm {draft} "))
        return self.member(CHAIR, case_id, line)

    def tick(self) -> int:
        return scheduler.run_due(self.db, self.svc)

    def sent(self, kind: str | None = None) -> list[dict]:
        """Queued mail, one row per recipient, oldest first, with its text."""
        rows = self.db.query(
            "SELECT o.id, o.kind, o.subject, o.raw, r.rcpt FROM outbound o JOIN outbound_rcpt r"
            " ON r.outbound_id = o.id WHERE ? IS NULL OR o.kind = ? ORDER BY o.id, r.rcpt",
            [kind, kind])
        return [{**r, "body": email.message_from_bytes(r["raw"]).get_payload(decode=True)
                 .decode()} for r in rows]

    def alarms(self, **where: str) -> list[dict]:
        sql = " AND ".join(f"{k} = ?" for k in where) or "1"
        return list(self.db.query(f"SELECT * FROM alarms WHERE {sql} ORDER BY id",
                                  list(where.values())))

    def audit(self, action: str) -> list[dict]:
        return [{**r, "detail": json.loads(r["detail"])} for r in self.db.query(
            "SELECT * FROM audit WHERE action = ? ORDER BY id", [action])]

    def due(self, case_id: str, name: str) -> str:
        return self.alarms(case_id=case_id, clock=name, state="pending")[0]["due_at"]

    def policy(self) -> Policy:
        return Policy.from_rules(self.svc.rules)


def draft_id(transcript: str) -> int:
    """The draft a transcript reports having filed."""
    return int(re.search(r"\bdraft #?(\d+)", transcript).group(1))


def stamp(text: str) -> str:
    return timestamps.stamp(timestamps.parse(text))
