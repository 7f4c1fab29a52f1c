"""`sortctl certs create|trust|list`: the controller's OPC UA application certificate and its
trust list (docs/opcua-security.md).

``create`` makes own/cert.der and own/key.pem with the application URI the controller uses;
``trust FILE`` copies a peer's certificate (often one from rejected/, where a refused peer's
certificate lands) into trusted/ and removes it from rejected/; ``list`` shows all three.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from plant.opcua_security import Pki, create_certificate, describe, load_any_certificate, thumbprint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="create the application instance certificate")
    c.add_argument("--uri", default="urn:sortcentre:controller",
                   help="application URI (must equal opcua_security.application_uri)")
    c.add_argument("--name", default="sortcentre controller", help="certificate common name")
    c.add_argument("--days", type=int, default=3650)
    c.add_argument("--host", action="append", help="DNS name in the certificate (repeatable)")
    c.add_argument("--force", action="store_true", help="replace an existing certificate")
    t = sub.add_parser("trust", help="trust a peer's certificate (DER or PEM)")
    t.add_argument("file", type=Path)
    sub.add_parser("list", help="own, trusted and rejected certificates")
    for p in (c, t, sub.choices["list"]):
        p.add_argument("--dir", type=Path, default=Path("var/pki"), help="PKI folder (default var/pki)")


def run(args: argparse.Namespace) -> int:
    pki = Pki(args.dir)
    if args.action == "create":
        if pki.cert.exists() and not args.force:
            print(f"sortctl certs: {pki.cert} exists (use --force to replace it; peers must trust the new one)")
            return 1
        cert = create_certificate(pki, args.uri, args.name, days=args.days, hostnames=args.host)
        print(f"created {pki.cert} and {pki.key}: {describe(cert)}")
        print(f"give {pki.cert} to each PLC/SCADA that must trust this controller")
        return 0
    if args.action == "trust":
        try:
            cert = load_any_certificate(args.file)
        except (OSError, ValueError) as exc:
            print(f"sortctl certs: {args.file}: not a certificate ({exc})")
            return 2
        pki.make_dirs()
        tp = thumbprint(cert)
        dest = pki.trusted / f"{tp}.der"
        from cryptography.hazmat.primitives import serialization

        dest.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        rejected = pki.rejected / f"{tp}.der"
        if rejected.exists() and rejected.resolve() != dest.resolve():
            rejected.unlink()
        print(f"trusted {describe(cert)} -> {dest}")
        return 0
    for label, folder in (("own", pki.root / "own"), ("trusted", pki.trusted), ("rejected", pki.rejected)):
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix != ".pem") if folder.is_dir() else []
        print(f"{label}: {len(files)}")
        for f in files:
            try:
                print(f"  {f.name}: {describe(load_any_certificate(f))}")
            except ValueError:
                print(f"  {f.name}: not a certificate")
    return 0


__all__ = ["add_arguments", "run"]
