"""OpenPGP in mail: PGP/MIME (RFC 3156) and inline PGP, both ways.

Out: :func:`seal` wraps a composed message as ``multipart/encrypted``.  The real
headers go inside, in the protected-headers style Thunderbird, K-9 and others read
(``protected-headers="v1"``), and the visible Subject is only what the caller allows
(the case tag and code name), so that a mail server or a notification preview shows
nothing of the case.

In: :func:`unwrap` turns mail that arrived encrypted or signed into the clear message
the pipeline threads, files and searches, with the verdict on its signature.  The
spool keeps the bytes as received; this only makes the text mailflow reads.  A
signature counts only when it covers all the mail's text: a signed part beside
unsigned text, or an inline signed block with other text around it, proves nothing
(``Signature.status == "partial"``), or one signed line could carry unsigned commands.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email._policybase import compat32
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from itertools import pairwise

from mailflow.mail.compose import Outgoing, crlf, encode_headers
from mailflow.mail.decode import part_text
from mailflow.mail.gpgoutput import UNSIGNED, Signature
from mailflow.mail.openpgp import Keyring

# Headers copied inside the encrypted part.  Reply-To stays outside only: it carries a
# member's own token, and leaving it out lets one sealed body serve every member.
PROTECTED = ("From", "To", "Cc", "Subject", "Date")
PREAMBLE = b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
LOOKS_PGP = re.compile(rb"(?i)multipart/(?:encrypted|signed)|-----BEGIN PGP ")
ENCRYPTED = re.compile(rb"(?i)multipart/encrypted|-----BEGIN PGP MESSAGE-----")
ARMOR = re.compile(r"-----BEGIN PGP (MESSAGE|SIGNED MESSAGE)-----\r?\n.*?"
                   r"-----END PGP (?:MESSAGE|SIGNATURE)-----", re.DOTALL)
HEAD_END = re.compile(rb"\r?\n\r?\n")


def seal(ring: Keyring, out: Outgoing, fingerprints: Sequence[str], outer_subject: str
         ) -> Outgoing:
    """``out`` encrypted to ``fingerprints``, its Subject on the outside replaced."""
    return encrypted(out, ring.encrypt(protected_entity(out), fingerprints), outer_subject)


def protected_entity(out: Outgoing) -> bytes:
    """The body's MIME entity with the :data:`PROTECTED` headers copied into it (of a
    whole message: see :meth:`~mailflow.mail.compose.Outgoing.inlined`)."""
    if out.attach_spool_id is not None:
        raise ValueError("an original attached by reference cannot be sealed: attach it")
    entity = out.entity
    first = entity.index(b"\r\n")  # compose writes Content-Type first, on one line
    inner = [(k, v) for k, v in out.headers if k in PROTECTED]
    return (entity[:first] + b'; protected-headers="v1"\r\n' + encode_headers(inner)
            + entity[first + 2:])


def encrypted(out: Outgoing, ciphertext: bytes, outer_subject: str) -> Outgoing:
    """The message on the wire: its own headers (Subject replaced) around the
    RFC 3156 ``multipart/encrypted`` body.  ``headers`` and ``text`` stay clear."""
    outer = [(k, outer_subject if k == "Subject" else v) for k, v in out.headers]
    boundary = f"=_mailflow_pgp_{uuid.uuid4().hex}".encode()
    head = encode_headers(outer)
    body = (b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\r\n'
            b' boundary="' + boundary + b'"\r\n\r\n' + PREAMBLE
            + b"--" + boundary + b"\r\n"
            b"Content-Type: application/pgp-encrypted\r\n"
            b"Content-Description: PGP/MIME version identification\r\n\r\n"
            b"Version: 1\r\n\r\n"
            b"--" + boundary + b"\r\n"
            b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n'
            b"Content-Description: OpenPGP encrypted message\r\n"
            b'Content-Disposition: inline; filename="encrypted.asc"\r\n\r\n'
            + crlf(ciphertext).rstrip(b"\r\n") + b"\r\n"
            b"--" + boundary + b"--\r\n")
    return Outgoing(out.headers, out.text, head + body, entity_at=len(head))


@dataclass(frozen=True)
class Unwrapped:
    """Mail as mailflow reads it.  ``raw``: the clear message where it could be
    decrypted, else the bytes as received.  ``encrypted``: some of it arrived
    encrypted; ``decrypted``: and all of that was read; ``error``: why not."""

    raw: bytes
    encrypted: bool = False
    decrypted: bool = False
    signature: Signature = UNSIGNED
    error: str = ""


def unwrap(ring: Keyring, raw: bytes) -> Unwrapped:
    """Decrypt PGP/MIME or inline PGP and check signatures, with ``ring``'s keys."""
    if not LOOKS_PGP.search(raw):
        return Unwrapped(raw)  # the common case costs one scan, no parse
    head = BytesHeaderParser(policy=compat32).parsebytes(raw)
    kind, protocol = head.get_content_type(), (head.get_param("protocol") or "")
    if kind == "multipart/encrypted" and str(protocol).lower() == "application/pgp-encrypted":
        return _pgp_mime(ring, raw)
    if kind == "multipart/signed" and str(protocol).lower() == "application/pgp-signature":
        signed, signature = _verify_signed(ring, raw)
        return Unwrapped(replace_entity(raw, signed) if signed else raw, signature=signature)
    return _inline(ring, raw)


def _pgp_mime(ring: Keyring, raw: bytes) -> Unwrapped:
    msg = BytesParser(policy=compat32).parsebytes(raw)
    parts = msg.get_payload()
    payload = None
    if isinstance(parts, list) and len(parts) == 2 and isinstance(parts[1], Message):
        payload = parts[1].get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload:
        return Unwrapped(raw, True, False, error="multipart/encrypted without its OpenPGP part")
    result = ring.decrypt(payload)
    if not result.ok:
        return Unwrapped(raw, True, False, result.signature, result.error)
    entity, signature = crlf(result.data), result.signature
    inner = BytesHeaderParser(policy=compat32).parsebytes(entity)
    if (inner.get_content_type() == "multipart/signed"
            and str(inner.get_param("protocol") or "").lower() == "application/pgp-signature"):
        # Signed, then encrypted (RFC 3156 6.1), as against both at once (6.2).
        signed, signature = _verify_signed(ring, entity)
        entity = replace_entity(entity, signed) if signed else entity
    return Unwrapped(replace_entity(raw, entity), True, True, signature)


# -- multipart/signed ----------------------------------------------------------------

def _verify_signed(ring: Keyring, entity: bytes) -> tuple[bytes | None, Signature]:
    """(the signed entity, the verdict) of a ``multipart/signed`` entity."""
    head = BytesHeaderParser(policy=compat32).parsebytes(entity)
    boundary = head.get_boundary()
    split = HEAD_END.search(entity)
    if not boundary or not split:
        return None, Signature("bad")
    parts = mime_parts(entity[split.end():], boundary.encode("utf-8", "surrogateescape"))
    if len(parts) != 2:
        return None, Signature("bad")
    signature_part = BytesParser(policy=compat32).parsebytes(parts[1])
    signature = signature_part.get_payload(decode=True)
    if not isinstance(signature, bytes):
        return parts[0], Signature("bad")
    # What was signed is the first part exactly, with CRLF line ends (RFC 3156 5).
    return parts[0], ring.verify_detached(crlf(parts[0]), signature)


def mime_parts(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts of a multipart body, byte for byte (the line break before each
    delimiter belongs to the delimiter, RFC 2046 5.1.1)."""
    delimiter = re.compile(rb"\r?\n--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")
    found = list(delimiter.finditer(b"\r\n" + body))
    parts = []
    for this, following in pairwise(found):
        if this.group(1):  # the closing delimiter
            break
        parts.append((b"\r\n" + body)[this.end():following.start()])
    return parts


# -- inline PGP ----------------------------------------------------------------------

@dataclass
class _Reading:
    """What the armored blocks of one message came to."""

    signatures: list[Signature]
    errors: list[str]
    outside: list[str]       # text beside the blocks, which no signature covers
    encrypted: bool = False


def _inline(ring: Keyring, raw: bytes) -> Unwrapped:
    """Armored blocks in text parts (``BEGIN PGP MESSAGE``, clearsigned text),
    replaced by their text where they can be read."""
    msg = BytesParser(policy=compat32).parsebytes(raw)
    reading = _Reading([], [], [])
    texts = [p for p in msg.walk() if not p.is_multipart() and not p.get_filename()
             and p.get_content_type() in ("text/plain", "text/html")]
    for part in texts:
        text = part_text(part, [])
        if part.get_content_type() == "text/html":
            # The renderer (selectolax) only for inline PGP in HTML: every module that
            # mails a member imports this one.
            from mailflow.mail.htmltext import html_to_text

            text = html_to_text(text).text
        if "-----BEGIN PGP " not in text:
            reading.outside.append(text)
            continue
        part.set_type("text/plain")  # an HTML part's blocks come out as plain text
        part.set_payload(_open_blocks(ring, text, reading), "utf-8")
    if not reading.signatures and not reading.errors:
        return Unwrapped(raw)
    signature = combined(reading.signatures)
    if signature.good and any(t.strip() for t in reading.outside):
        signature = Signature("partial", signature.fingerprint, signature.key_id)
    clear = raw if reading.errors else msg.as_bytes()
    return Unwrapped(clear, reading.encrypted, reading.encrypted and not reading.errors,
                     signature, "; ".join(reading.errors))


def _open_blocks(ring: Keyring, text: str, reading: _Reading) -> str:
    """``text`` with each armored block replaced by what it says (kept if unreadable)."""
    pieces, at = [], 0
    for block in ARMOR.finditer(text):
        reading.outside.append(text[at:block.start()])
        pieces.append(text[at:block.start()])
        at = block.end()
        reading.encrypted |= block.group(1) == "MESSAGE"
        result = ring.decrypt(block.group(0).encode("utf-8"))
        if result.ok:
            pieces.append(result.data.decode("utf-8", "replace").replace("\r\n", "\n"))
            reading.signatures.append(result.signature)
        else:
            pieces.append(block.group(0))
            reading.errors.append(result.error)
    reading.outside.append(text[at:])
    pieces.append(text[at:])
    return "".join(pieces)


BAD_FIRST = ("bad", "expired", "revoked", "unknown")


def combined(signatures: list[Signature]) -> Signature:
    """One verdict for several signed blocks: the worst of them; good only when every
    block was signed, and by the same key."""
    for status in BAD_FIRST:
        worst = next((s for s in signatures if s.status == status), None)
        if worst:
            return worst
    good = [s for s in signatures if s.good]
    if not good:
        return UNSIGNED
    if len(good) < len(signatures) or len({s.fingerprint for s in good}) > 1:
        return Signature("partial", good[0].fingerprint, good[0].key_id)
    return good[0]


# -- bytes ---------------------------------------------------------------------------

def fields(head: bytes) -> list[tuple[str, bytes]]:
    """A header block's fields, each with its folded lines, by lower-cased name."""
    found: list[tuple[str, bytes]] = []
    for line in crlf(head).split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and found:
            found[-1] = (found[-1][0], found[-1][1] + b"\r\n" + line)
        elif b":" in line:
            found.append((line.split(b":", 1)[0].strip().lower().decode("ascii", "replace"),
                          line))
    return found


def replace_entity(raw: bytes, entity: bytes) -> bytes:
    """``raw``'s headers around ``entity``: its Content-* fields replace the outer
    ones, and a protected Subject inside replaces the outer Subject (often "...")."""
    outer_end, inner_end = HEAD_END.search(raw), HEAD_END.search(entity)
    outer = fields(raw[:outer_end.start()] if outer_end else raw)
    inner = fields(entity[:inner_end.start()] if inner_end else entity)
    body = entity[inner_end.end():] if inner_end else b""
    subject = [f for name, f in inner if name == "subject"]
    kept = [f for name, f in outer if not name.startswith("content-")
            and name != "mime-version" and not (subject and name == "subject")]
    content = [f for name, f in inner if name.startswith("content-")]
    return b"\r\n".join([*kept, *subject[:1], b"MIME-Version: 1.0", *content]) \
        + b"\r\n\r\n" + body


KEY_BLOCK = re.compile(r"-----BEGIN PGP PUBLIC KEY BLOCK-----.*?-----END PGP PUBLIC KEY BLOCK-----",
                       re.DOTALL)


def attached_keys(raw: bytes) -> bytes:
    """The public keys a mail carries: ``application/pgp-keys`` parts, key files
    (armored or binary ``.asc``/``.gpg``/``.pgp``/``.key``), and armored blocks pasted
    into the text, as one blob for GnuPG to import."""
    found: list[bytes] = []
    for part in BytesParser(policy=compat32).parsebytes(raw).walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            continue
        name = (part.get_filename() or "").lower()
        text = payload.decode("utf-8", "replace")
        if part.get_content_type() == "application/pgp-keys" or (
                name.endswith((".asc", ".gpg", ".pgp", ".key")) and _binary_key(payload)):
            found.append(payload)
        else:
            found += [m.group(0).encode() for m in KEY_BLOCK.finditer(text)]
    return b"\n".join(found)


def _binary_key(data: bytes) -> bool:
    """Armored, or a binary OpenPGP public key packet (tag 6) first."""
    if b"-----BEGIN PGP PUBLIC KEY BLOCK-----" in data:
        return True
    tag = data[0]
    return bool(tag & 0x80) and ((tag & 0x3F) == 6 if tag & 0x40 else (tag >> 2) & 0xF == 6)
