"""Ed25519 signatures on exported reports, so an auditor can show a figure came from
Pantau unchanged. The key is a PEM file named in the settings
(`api.report_signing_key_file`); what is signed is the report's canonical JSON (sorted
keys, no spaces, UTF-8), which `canonical` gives and a verifier rebuilds."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "Ed25519"


class SigningKeyError(ValueError):
    pass


def canonical(document: Any) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise SigningKeyError(f"{path}: cannot read an unencrypted PEM private key: {err}") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return key


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def sign(key: Ed25519PrivateKey, document: Any) -> dict[str, Any]:
    """The signed envelope: the document, its signature and the public key."""
    return {
        "report": document,
        "algorithm": ALGORITHM,
        "signature": base64.b64encode(key.sign(canonical(document))).decode("ascii"),
        "public_key": public_pem(key),
    }


def verify(envelope: dict[str, Any], public_key_pem: str) -> bool:
    """Does the envelope's signature hold for its report under this public key?"""
    key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    if not isinstance(key, Ed25519PublicKey):
        return False
    try:
        key.verify(base64.b64decode(envelope["signature"]), canonical(envelope["report"]))
    except (InvalidSignature, KeyError, ValueError):
        return False
    return True


def write_new_key(path: Path) -> str:
    """Create a key file (mode 600); its public PEM, to publish."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return public_pem(key)
