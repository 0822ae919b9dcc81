"""``[intake.imap]``: the mailbox mailflow polls, and what makes its settings valid.

Its own module so that :mod:`mailflow.config` stays one screenful per section.
"""

from __future__ import annotations

from mailflow.sections import Section


class Imap(Section):
    """``[intake.imap]``: poll a mailbox instead of (or as well as) listening."""

    host: str = ""
    port: int = 0                    # 0: 993 for implicit TLS, else 143
    tls: str = "implicit"            # implicit, starttls, or none (this host only)
    ca_file: str = ""                # PEM file of a private CA; empty: the system's CAs
    user: str = ""
    # The password never sits in the config: an environment variable or a file.
    password_env: str = ""
    password_file: str = ""
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    # End IDLE and poll again this often: servers may drop an IDLE after 29 minutes.
    idle_renew: float = 300.0
    # Between polls when the server offers no IDLE.
    poll_interval: float = 60.0
    reconnect_min: float = 1.0
    reconnect_max: float = 300.0
    timeout: float = 60.0            # seconds for connecting and for each command

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def validate_imap(imap: Imap) -> list[str]:
    p = "intake.imap"
    problems = [f"{p}.{key}: required" for key in ("host", "user") if not getattr(imap, key)]
    if imap.tls not in ("implicit", "starttls", "none"):
        problems.append(f"{p}.tls: must be 'implicit', 'starttls' or 'none'")
    elif imap.tls == "none" and imap.host not in LOOPBACK:
        problems.append(f"{p}.tls: 'none' would send the password in clear; "
                        "only allowed for a server on this host")
    if not 0 <= imap.port <= 65535:
        problems.append(f"{p}.port: not a port number")
    if bool(imap.password_env) == bool(imap.password_file):
        problems.append(f"{p}: set exactly one of password_env and password_file "
                        "(the password itself never goes in the config)")
    if not imap.folder or not imap.processed_folder:
        problems.append(f"{p}: folder and processed_folder must not be empty")
    elif imap.folder == imap.processed_folder:
        problems.append(f"{p}.processed_folder: must differ from folder")
    if not 0 < imap.idle_renew <= 1500:
        problems.append(f"{p}.idle_renew: must be between 0 and 1500 seconds "
                        "(servers may end an IDLE after 29 minutes)")
    for key in ("poll_interval", "reconnect_min", "timeout"):
        if getattr(imap, key) <= 0:
            problems.append(f"{p}.{key}: must be positive")
    if imap.reconnect_max < imap.reconnect_min:
        problems.append(f"{p}.reconnect_max: must be at least reconnect_min")
    return problems
