"""OpenPGP keys: ``keys`` (list), ``keys import``, ``keys generate``, ``keys export``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mailflow.cli.options import arg, command, emit, load_config
from mailflow.cli.sysexits import EX_CONFIG, EX_DATAERR, EX_OK
from mailflow.config import Config

if TYPE_CHECKING:
    from mailflow.mail.gpgoutput import Key


def _expiry(key: Key) -> str:
    return key.expires.strftime("%Y-%m-%d") if key.expires else "never"


@command("keys", "the committee's OpenPGP keys and which member each is for", json_out=True)
def cmd_keys(args: argparse.Namespace) -> int:
    """List the keys of the committee's keyring (archive/keyring/committee): the
    committee's own key and the members' keys, each with its fingerprint, owner and
    expiry, then each member's encryption policy ([committee.encryption]) and what it
    means for their mail today.  Keys reporters sent are counted, not listed."""
    from mailflow.case import keys

    cfg = load_config(args)
    rings = keys.open_keyrings(cfg)
    own = keys.committee_key(rings, cfg)
    listed = [{**k.as_dict(), "whose": "committee" if own and k.fingerprint == own.fingerprint
               else ", ".join(keys.members_named(cfg, k)) or "nobody on the roster"}
              for k in rings.committee.all_keys()]
    members = []
    for member in cfg.committee.members:
        key = keys.member_key(rings, member)
        policy = cfg.committee.encryption_policy(member)
        members.append({"member": member, "policy": policy,
                        "key": key.fingerprint if key else None,
                        "mail": _what_they_get(policy, key is not None)})
    data = {"committee_key": own.fingerprint if own else None, "keys": listed,
            "members": members, "correspondents_keys": len(rings.correspondents.all_keys())}
    lines = [f"{'FINGERPRINT':<40}  {'EXPIRES':<10}  {'STATE':<7}  WHOSE / OWNER"]
    lines += [f"{k['fingerprint']:<40}  {k['expires'][:10] if k['expires'] else 'never':<10}  "
              f"{'usable' if k['usable'] else 'no':<7}  {k['whose']}: {k['owner']}"
              for k in listed]
    if not own:
        lines.append("No committee key yet: `mailflow keys generate` makes one.")
    lines += ["", "Members:"]
    lines += [f"  {m['member']:<28} {m['policy']:<9} {m['mail']}" for m in members]
    lines.append(f"\nKeys reporters sent (archive/keyring/correspondents): "
                 f"{data['correspondents_keys']}")
    emit(args, data, "\n".join(lines))
    return EX_OK


def _what_they_get(policy: str, keyed: bool) -> str:
    if policy == "never":
        return "mail in clear (policy never)"
    if keyed:
        return "mail encrypted to their key"
    if policy == "required":
        return "no key: a notice instead of each mail (they can send their key with #key)"
    return "no key: mail in clear"


@command("keys import", "import members' public keys from a file",
         arg("file", metavar="FILE", help="armored or binary public keys; - for standard input"))
def cmd_keys_import(args: argparse.Namespace) -> int:
    """Import OpenPGP public keys.  A key carrying a member's address goes to the
    committee's keyring: mail to that member is then encrypted to it (as their
    [committee.encryption] policy says) and their signature proves them.  A key naming
    no member goes to the correspondents' keyring, used only to encrypt replies to its
    address.  Refused: secret keys, keys naming several members, keys carrying the
    committee's own address.  Exits 65 if no key was imported."""
    from mailflow.case import keys
    from mailflow.mail.openpgp import OpenPGPError

    cfg = load_config(args)
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    rings = keys.open_keyrings(cfg)
    try:
        added = keys.add_keys(rings, cfg, data)
    except OpenPGPError as e:
        print(f"{args.file}: {e}", file=sys.stderr)
        return EX_DATAERR
    finally:
        rings.stop_agents()  # importing asks the agent whether the secret half is held
    for a in added:
        where = (f"refused: {a.refused}" if a.refused else
                 f"imported for {a.member}" if a.member else
                 "imported as a correspondent's key (it names no member)")
        print(f"{a.key.fingerprint} {a.key.owner} (expires {_expiry(a.key)}): {where}")
    return EX_OK if any(a.ring for a in added) else EX_DATAERR


def generate(cfg: Config, expires: str = "0", replace: bool = False) -> int:
    """Make the committee's key (also offered by ``mailflow init --with-key``)."""
    from mailflow.case import keys
    from mailflow.mail.openpgp import OpenPGPError

    rings = keys.open_keyrings(cfg)
    own = keys.committee_key(rings, cfg)
    if own and not replace:
        print(f"the committee already has a key: {own.fingerprint}; --replace makes a new "
              "one (the old one still decrypts mail sent to it)", file=sys.stderr)
        return EX_CONFIG
    try:
        key = rings.committee.generate(cfg.committee.name, cfg.committee.conduct_address,
                                       expires)
    except OpenPGPError as e:
        print(e, file=sys.stderr)
        return EX_CONFIG
    finally:
        rings.stop_agents()
    print(f"committee key {key.fingerprint} for {key.owner} (expires {_expiry(key)}); "
          "publish it with `mailflow keys export`")
    return EX_OK


@command("keys generate", "make the committee's own key, for encrypted reports",
         arg("--expires", default="0", metavar="WHEN",
             help="when it expires, as GnuPG reads it: 0 (never, the default), 2y, 2030-01-01"),
         arg("--replace", action="store_true",
             help="make a new key although one exists (the old one still decrypts)"))
def cmd_keys_generate(args: argparse.Namespace) -> int:
    """Make the committee's OpenPGP key (Ed25519 and Curve25519) for the conduct
    address, so that reporters can encrypt their reports.  It has no passphrase, since
    mailflow runs unattended: it is protected as the archive is (mode 0700).  Every
    acknowledgement names its fingerprint."""
    return generate(load_config(args), args.expires, args.replace)


@command("keys export", "print the committee's public key and write its Web Key Directory",
         arg("--output", metavar="FILE", help="write the armored key here, not to standard output"))
def cmd_keys_export(args: argparse.Namespace) -> int:
    """Print the committee's public key, armored, for the website, and write a Web
    Key Directory tree under archive/wkd/ for the web server: serve that directory as
    the document root of openpgpkey.DOMAIN (the advanced method) or copy its
    .well-known into DOMAIN's (the direct method), over HTTPS.  Mail clients then find
    the key from the conduct address alone."""
    from mailflow.case import keys
    from mailflow.mail import wkd

    cfg = load_config(args)
    rings = keys.open_keyrings(cfg)
    own = keys.committee_key(rings, cfg)
    if own is None:
        print("no committee key yet: `mailflow keys generate` makes one", file=sys.stderr)
        return EX_CONFIG
    armored = rings.committee.export(own.fingerprint)
    if args.output:
        Path(args.output).write_bytes(armored)
    else:
        sys.stdout.write(armored.decode("ascii"))
    tree = cfg.archive_dir / "wkd"
    written = wkd.write_tree(tree, cfg.committee.conduct_address,
                             rings.committee.export(own.fingerprint, armor=False))
    print(f"Web Key Directory for {cfg.committee.conduct_address}: {tree} "
          f"({len(written)} files)", file=sys.stderr)
    return EX_OK
