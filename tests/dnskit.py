"""A real DNS server on loopback for the DKIM tests: it answers TXT queries from a
table (the DKIM public keys a test publishes) over UDP, as a resolver would be asked;
and a signer that makes DKIM signatures with a key made by openssl for the test."""

from __future__ import annotations

import base64
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import dkim
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


@dataclass
class TxtServer:
    records: dict[str, str] = field(default_factory=dict)   # "sel._domainkey.x.org": TXT
    queries: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> TxtServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            self.queries.append(name)
            text = self.records.get(name)
            if text is not None and question.rdtype == dns.rdatatype.TXT:
                chunks = " ".join(f'"{text[i:i + 200]}"' for i in range(0, len(text), 200))
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", chunks))
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), peer)


@dataclass
class Signer:
    """A domain's DKIM key (made by openssl) and the TXT record that publishes it."""

    domain: str
    selector: str
    key: bytes
    public: str

    @classmethod
    def make(cls, tmp: Path, domain: str, selector: str = "mf") -> Signer:
        pem = tmp / f"{selector}.{domain}.pem"
        subprocess.run(["openssl", "genrsa", "-out", str(pem), "2048"], check=True,
                       capture_output=True)
        der = subprocess.run(["openssl", "rsa", "-in", str(pem), "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        return cls(domain, selector, pem.read_bytes(), base64.b64encode(der).decode())

    @property
    def record(self) -> tuple[str, str]:
        return (f"{self.selector}._domainkey.{self.domain}",
                f"v=DKIM1; k=rsa; p={self.public}")

    def sign(self, raw: bytes, *, domain: str | None = None, length: bool = False,
             headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"date",
                                           b"message-id")) -> bytes:
        sig = dkim.sign(raw, self.selector.encode(), (domain or self.domain).encode(),
                        self.key, include_headers=list(headers), length=length)
        return sig + raw
