"""OPC UA application security: our instance certificate, the trust list, and both ends' use.

Layout of the PKI folder (``opcua_security.pki_dir``, default ``var/pki``)::

    own/cert.der  own/key.pem    our application instance certificate (sortctl certs create)
    trusted/                     peers we accept (DER or PEM), one file per certificate
    rejected/                    peers we refused, saved for an engineer to inspect and trust

A peer is trusted when the exact certificate (SHA-1 thumbprint, as OPC UA identifies them) is in
``trusted/``; a self-signed certificate has no issuer to vouch for it, so this is the usual
OPC UA practice. Anything else is refused with BadCertificateUntrusted and its certificate is
written to ``rejected/<thumbprint>.der`` - `sortctl certs trust FILE` moves it across.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from plant.opcua_settings import OpcuaSecuritySettings

if TYPE_CHECKING:
    from asyncua.client.client import Client
    from asyncua.server.server import Server

log = logging.getLogger(__name__)

__all__ = [
    "POLICIES",
    "OpcuaSecuritySettings",
    "Pki",
    "TrustList",
    "UntrustedCertificate",
    "create_certificate",
    "load_any_certificate",
    "application_uri_of",
    "load_users",
    "read_password",
    "secure_client",
    "secure_server",
    "server_configurator",
    "thumbprint",
]


class UntrustedCertificate(Exception):
    """A peer's certificate is not in the trust list (saved to rejected/)."""


@dataclass(frozen=True, slots=True)
class Pki:
    """The folders of one application's PKI."""

    root: Path

    @property
    def cert(self) -> Path:
        return self.root / "own" / "cert.der"

    @property
    def key(self) -> Path:
        return self.root / "own" / "key.pem"

    @property
    def trusted(self) -> Path:
        return self.root / "trusted"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    def make_dirs(self) -> None:
        for d in (self.root / "own", self.trusted, self.rejected):
            d.mkdir(parents=True, exist_ok=True)


def load_any_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER certificate, hex: how OPC UA stacks (and node-opcua's PKI) name certificates."""
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()  # noqa: S324


def describe(cert: x509.Certificate) -> str:
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    name = str(cn[0].value) if cn else "?"
    return f"CN={name} URI={','.join(uris) or '-'} thumbprint={thumbprint(cert)} valid until {cert.not_valid_after_utc:%Y-%m-%d}"


class TrustList:
    """The trusted/ folder, re-read on every check (an engineer's `certs trust` takes effect at the
    next connection attempt, no restart)."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki

    def thumbprints(self) -> set[str]:
        out = set()
        if self.pki.trusted.is_dir():
            for f in sorted(self.pki.trusted.iterdir()):
                if f.is_file():
                    try:
                        out.add(thumbprint(load_any_certificate(f)))
                    except ValueError:
                        log.warning("trust list: %s is not a certificate (ignored)", f)
        return out

    def check(self, cert: x509.Certificate, who: str) -> None:
        """Raise UntrustedCertificate (after saving it to rejected/) unless ``cert`` is trusted."""
        tp = thumbprint(cert)
        if tp in self.thumbprints():
            return
        self.pki.rejected.mkdir(parents=True, exist_ok=True)
        dest = self.pki.rejected / f"{tp}.der"
        dest.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        raise UntrustedCertificate(
            f"{who} certificate not trusted ({describe(cert)}); saved to {dest} - "
            f"if it is the right one: sortctl certs trust {dest} --dir {self.pki.root}"
        )


def create_certificate(pki: Pki, application_uri: str, common_name: str, *, days: int = 3650,
                       hostnames: list[str] | None = None) -> x509.Certificate:
    """A self-signed application instance certificate (client and server use) with
    ``application_uri`` in subjectAltName, as OPC 10000-6 6.2.2 asks; key and cert under own/."""
    from asyncua.crypto import cert_gen

    pki.make_dirs()
    key = cert_gen.generate_private_key()
    names = hostnames or ["localhost", socket.gethostname()]
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    sans += [x509.DNSName(h) for h in dict.fromkeys(names)]
    cert = cert_gen.generate_self_signed_app_certificate(
        key, common_name, {"organizationName": "sortcentre"}, sans,
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH], days=days,
    )
    pki.key.write_bytes(cert_gen.dump_private_key_as_pem(key))
    pki.key.chmod(0o600)
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return cert


def read_password(path: str | None) -> str | None:
    """The first line of a password file (kept out of service.yaml)."""
    if path is None:
        return None
    return Path(path).read_text().splitlines()[0] if Path(path).read_text() else ""


# policy name in settings -> asyncua policy class name and server policy type name
POLICIES = {"Basic256Sha256": "SecurityPolicyBasic256Sha256", "Aes256_Sha256_RsaPss": "SecurityPolicyAes256Sha256RsaPss"}

Validator = Callable[[x509.Certificate, object], Awaitable[None]]


def validator(trust: TrustList, who: str) -> Validator:
    """An asyncua certificate validator (client: the server's cert; server: each client's)."""

    async def check(cert: x509.Certificate, app: object) -> None:
        from asyncua.common.utils import ServiceError
        from asyncua.ua.status_codes import StatusCodes

        try:
            trust.check(cert, who)
        except UntrustedCertificate as exc:
            log.error("OPC UA: %s", exc)
            raise ServiceError(StatusCodes.BadCertificateUntrusted) from exc

    return check


# -- the two ends ---------------------------------------------------------------------------
def _server_policy(policy: str, mode: str) -> object:
    from asyncua import ua

    name = {"Basic256Sha256": "Basic256Sha256", "Aes256_Sha256_RsaPss": "Aes256Sha256RsaPss"}[policy]
    return getattr(ua.SecurityPolicyType, f"{name}_{mode}")


def load_users(path: str | None) -> dict[str, str]:
    """``name:password`` lines (blank lines and # comments skipped)."""
    if path is None:
        return {}
    users = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, password = line.partition(":")
            users[name.strip()] = password
    return users


def require_own(pki: Pki) -> None:
    if not (pki.cert.exists() and pki.key.exists()):
        raise FileNotFoundError(
            f"no application certificate in {pki.root}/own (create one: sortctl certs create --dir {pki.root})")


def application_uri_of(cert: x509.Certificate) -> str | None:
    """The application URI in a certificate's subjectAltName (what a peer checks it against)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


async def secure_server(server: Server, pki_dir: str | Path, policy: str, mode: str, *,
                        application_uri: str | None = None, users: Mapping[str, str] | None = None,
                        who: str = "client") -> None:
    """Security for any asyncua server of ours (the PackTags server, the simulated conveyor PLC).

    Only ``policy``/``mode`` is offered (no unsecured endpoint: a client cannot pick a weaker
    one), client certificates are checked against ``pki_dir``'s trust list at CreateSession
    (refused ones land in rejected/), and with ``users`` only those names and passwords get a
    session (anonymous refused). ``application_uri`` defaults to the URI in our certificate,
    which clients such as node-opcua compare with the endpoint's.
    """
    from asyncua import ua
    from asyncua.crypto.permission_rules import User, UserRole
    from asyncua.server.user_managers import UserManager

    pki = Pki(Path(pki_dir))
    require_own(pki)
    uri = application_uri or application_uri_of(load_any_certificate(pki.cert))
    if uri is not None:
        await server.set_application_uri(uri)
    await server.load_certificate(str(pki.cert))
    await server.load_private_key(str(pki.key))
    server.set_security_policy([_server_policy(policy, mode)])  # type: ignore[list-item]
    server.set_certificate_validator(validator(TrustList(pki), who))
    if users:
        known = dict(users)

        class Users(UserManager):
            def get_user(self, iserver: object, username: str | None = None, password: str | None = None,
                         certificate: object = None) -> User | None:
                if username is not None and known.get(username) == password:
                    return User(role=UserRole.User, name=username)
                return None

        server.iserver.user_manager = Users()
        server.set_identity_tokens([ua.UserNameIdentityToken])


def server_configurator(sec: OpcuaSecuritySettings, users_file: str | None) -> Callable[[Server], Awaitable[None]]:
    """Security for the PackTags server from the service's ``opcua_security`` section (see
    ``secure_server``), with the SCADA users from ``users_file``."""

    async def configure(server: Server) -> None:
        await secure_server(server, sec.pki_dir, sec.policy, sec.mode, application_uri=sec.application_uri,
                            users=load_users(users_file))

    return configure


async def secure_client(client: Client, sec: OpcuaSecuritySettings, who: str = "server") -> None:
    """Security for an asyncua client: our certificate and application URI, the policy and
    mode, and the server's certificate checked against the trust list before the session."""
    from asyncua import ua
    from asyncua.crypto import security_policies

    pki = Pki(Path(sec.pki_dir))
    require_own(pki)
    client.application_uri = sec.application_uri
    client.certificate_validator = validator(TrustList(pki), who)
    policy = getattr(security_policies, POLICIES[sec.policy])
    mode = getattr(ua.MessageSecurityMode, sec.mode)
    await client.set_security(policy, str(pki.cert), str(pki.key), mode=mode)
    if sec.user is not None:
        client.set_user(sec.user)
        password = read_password(sec.password_file)
        if password is not None:
            client.set_password(password)
