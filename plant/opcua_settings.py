"""The OPC UA security settings model, apart from the code that acts on it: loading service
settings must not import the cryptography stack when security is off (13 MB in every controller)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from plant.site import Strict

__all__ = ["OpcuaSecuritySettings"]


class OpcuaSecuritySettings(Strict):
    """OPC UA security for the conveyor PLC client and the PackTags server; docs/opcua-security.md."""

    mode: Literal["None", "Sign", "SignAndEncrypt"] = Field(default="None", description="message security mode")
    policy: Literal["Basic256Sha256", "Aes256_Sha256_RsaPss"] = Field(
        default="Basic256Sha256", description="security policy when mode is not None"
    )
    pki_dir: str = Field(default="var/pki", description="own/, trusted/, rejected/ (sortctl certs create)")
    application_uri: str = Field(
        default="urn:sortcentre:controller", description="must match the URI in the application certificate"
    )
    user: str | None = Field(default=None, description="user name for the PLC session (anonymous when unset)")
    password_file: str | None = Field(default=None, description="file holding the PLC user's password (one line)")
