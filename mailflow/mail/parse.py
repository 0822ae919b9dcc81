"""Parsing raw mail into the fields the pipeline needs, without ever raising.

``from_addr`` is lenient (good enough to thread and to acknowledge); identity checks
use :func:`mailflow.mail.decode.strict_from` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email._policybase import Compat32
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from mailflow import timestamps
from mailflow.mail import msgids, quotes
from mailflow.mail.decode import addresses, clean, header_text, part_text, unix_lines
from mailflow.mail.flowed import unflow
from mailflow.mail.forwards import attached_message, inline_block
from mailflow.mail.htmltext import Rendered, html_to_text
from mailflow.mail.sketch import elided_size, sketch


class _RawHeaders(Compat32):
    """compat32, but headers come back as the raw text (8-bit bytes surrogate-escaped)
    instead of a ``Header`` that has already replaced them: header_text() decodes."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


RAW_HEADERS = _RawHeaders()


@dataclass
class Forwarded:
    """A message carried inside another: the original author of a forwarded report.
    ``attached``: a part of its own (its text is not in the carrying mail's body)."""

    from_addr: str | None
    from_name: str
    subject: str
    text: str
    attached: bool = False
    date: str = ""
    attachments: list[dict] = field(default_factory=list)


@dataclass
class Parsed:
    msg: Message
    from_addr: str | None
    from_name: str
    to_addrs: list[str]
    cc_addrs: list[str]
    subject: str
    date: str | None
    message_id: str
    in_reply_to: list[str]
    references: list[str]
    body_text: str
    new_text: str
    quoted_text: str
    attachments: list[dict] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    forwarded: list[Forwarded] = field(default_factory=list)
    # The text is plain text that was not format=flowed: its client may have wrapped
    # long lines (Gmail, Outlook), so a command's line may go on on the next one.
    hard_wrapped: bool = False
    signature: str = ""     # cut from the new text (mail/quotes.py); in neither part

    @property
    def forwarded_text(self) -> str:
        """The mail forwarded as attachments, as text: not part of the body, but part of
        what the sender says (the committee reads it, search finds it)."""
        blocks = []
        for f in (f for f in self.forwarded if f.attached):
            head = [f"From: {f.from_name} <{f.from_addr or 'unknown'}>",
                    *([f"Date: {f.date}"] if f.date else []), f"Subject: {f.subject}",
                    *(f"Attached: {a['name'] or '(unnamed)'} ({a['type']}, {a['size']} bytes)"
                      for a in f.attachments)]
            blocks.append("---------- Forwarded message (attached) ----------\n"
                          + "\n".join(head) + "\n\n" + f.text.strip())
        return "\n\n".join(blocks)

    @property
    def text_with_forwards(self) -> str:
        """The body, then any mail forwarded as an attachment."""
        return "\n\n".join(t for t in (self.body_text.rstrip(), self.forwarded_text) if t)

    def header(self, name: str) -> str:
        return header_text(self.msg.get(name))

    def header_all(self, name: str) -> list[str]:
        return [header_text(v) for v in self.msg.get_all(name) or []]


def plain_text(part: Message, defects: list[str]) -> tuple[str, bool]:
    """A text/plain part's text, format=flowed (RFC 3676) unwrapped to its lines, and
    whether it was not flowed (so its client may have hard-wrapped it)."""
    text = part_text(part, defects)
    # (get_param parses the whole header: only asked when the word is there at all)
    if "flowed" in str(part.get("Content-Type", "")).lower() and _param(part, "format") == "flowed":
        return unflow(text, delsp=_param(part, "delsp") == "yes"), False
    return text, True


def _param(part: Message, name: str) -> str:
    value = part.get_param(name)
    return value.lower() if isinstance(value, str) else ""


def _body_and_attachments(
    msg: Message, defects: list[str], forwarded: list[Forwarded]
) -> tuple[str, list[dict], bool, str]:
    """The body's text, the attachments, whether the text may be hard-wrapped, and the
    text the reply splitter reads (an HTML body's with its quotes marked ``>``)."""
    plain: list[tuple[str, bool]] = []
    htmls: list[Rendered] = []
    attachments: list[dict] = []

    def collect(part: Message) -> None:
        ctype = part.get_content_type()
        inner = attached_message(part, RAW_HEADERS)
        if inner is not None or ctype == "message/rfc822":
            # An attached message is its own thing: its text is not the outer body.
            if inner is not None:
                forwarded.append(_forwarded_from_message(inner, defects))
            if ctype == "message/rfc822":
                return
        if part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, Message):
                    collect(sub)
            return
        filename = part.get_filename()
        disposition = (part.get("Content-Disposition") or "").lower()
        if filename or disposition.startswith("attachment") or not ctype.startswith("text/"):
            size = elided_size(part)
            if size is None:
                size = len(part.get_payload(decode=True) or b"")
            attachments.append({"name": header_text(filename or ""), "type": ctype, "size": size})
        elif ctype == "text/html":
            htmls.append(html_to_text(part_text(part, defects)))
        else:
            plain.append(plain_text(part, defects))

    collect(msg)
    # The plain alternative, as the sender's client wrote it; HTML when it is missing or
    # empty (some clients send an empty text/plain beside the real HTML).
    body = "\n".join(text for text, _ in plain)
    if not body.strip():
        return ("\n".join(h.text for h in htmls), attachments, False,
                "\n".join(h.marked for h in htmls))
    return body, attachments, any(wrapped for _, wrapped in plain), body


def _forwarded_from_message(inner: Message, defects: list[str]) -> Forwarded:
    pairs = addresses(inner.get_all("From") or [])
    name, addr = pairs[0] if pairs else ("", None)
    body, attachments, _, _ = _body_and_attachments(inner, defects, [])
    return Forwarded(addr, name, header_text(inner.get("Subject")), body, attached=True,
                     date=header_text(inner.get("Date")), attachments=attachments)


def _inline_forward(text: str, subject: str) -> Forwarded | None:
    """A forward in the text: a marker line or header block, then the forwarded text."""
    found = inline_block(text, subject)
    if found is None:
        return None
    fields, forwarded_text = found
    pairs = addresses([fields["from"]])
    name, addr = pairs[0] if pairs else (fields["from"], None)
    return Forwarded(addr, name, fields.get("subject", ""), forwarded_text,
                     date=fields.get("date", ""))


def _message_ids(msg: Message, raw: bytes, defects: list[str]
                 ) -> tuple[str, list[str], list[str]]:
    """The message's own id and the ids it refers to, each only if usable (msgids)."""
    own, problem = msgids.message_id([clean(str(v)) for v in msg.get_all("Message-ID") or []],
                                     raw)
    in_reply_to, irt_problem = msgids.referenced(
        [clean(str(v)) for v in msg.get_all("In-Reply-To") or []], "In-Reply-To")
    references, refs_problem = msgids.referenced(
        [clean(str(v)) for v in msg.get_all("References") or []], "References")
    defects += [d for d in (problem, irt_problem, refs_problem) if d]
    return own, in_reply_to, references


def parse(raw: bytes) -> Parsed:
    """Parse raw bytes; malformed input yields defects, never an exception."""
    # A large report is parsed from its sketch: its large attachments' bodies cut.
    msg = BytesParser(policy=RAW_HEADERS).parsebytes(sketch(raw))
    defects = [type(d).__name__ for d in msg.defects]
    for part in msg.walk():
        if part is not msg:
            defects.extend(type(d).__name__ for d in getattr(part, "defects", []))

    from_pairs = addresses(msg.get_all("From") or [])
    from_name, from_addr = from_pairs[0] if from_pairs else ("", None)
    if not from_pairs:
        defects.append("no usable From address")
    date = None
    if msg.get("Date"):
        try:
            date = timestamps.stamp(parsedate_to_datetime(header_text(msg["Date"])))
        except Exception:
            defects.append("unparseable Date")
    message_id, in_reply_to, references = _message_ids(msg, raw, defects)

    forwarded: list[Forwarded] = []
    try:
        body, attachments, wrapped, marked = _body_and_attachments(msg, defects, forwarded)
    except Exception as e:  # the stdlib parser can still trip on pathological nesting
        defects.append(f"body not parsed: {type(e).__name__}")
        body, attachments, wrapped = unix_lines(clean(raw.decode("utf-8", "replace"))), [], True
        marked = body
    if not forwarded:
        inline = _inline_forward(body, header_text(msg.get("Subject")))
        if inline:
            forwarded.append(inline)
    reply = quotes.split(marked)
    return Parsed(
        msg=msg,
        from_addr=from_addr,
        from_name=from_name,
        to_addrs=[a for _, a in addresses(msg.get_all("To") or [])],
        cc_addrs=[a for _, a in addresses(msg.get_all("Cc") or [])],
        subject=header_text(msg.get("Subject")),
        date=date,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        body_text=body,
        new_text=reply.new_text,
        quoted_text=reply.quoted_text,
        attachments=attachments,
        defects=sorted(set(defects)),
        forwarded=forwarded,
        hard_wrapped=wrapped,
        signature=reply.signature,
    )
