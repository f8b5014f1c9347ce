"""A federation across hosts: the certificates and keys that close it to strangers.

`fedtui serve` keeps them in one folder (default `./federation`), written on first use and kept:
- `ca.pem`, `ca.key`: a certificate authority of the federation's own;
- `server.pem`, `server.key`: the SuperLink's TLS certificate, signed by that CA, naming every
  address clients may dial (written again when a new address is served);
- `client-<i>.key` (+ `.pub`): a key pair per client, the SuperNode's identity (Flower's
  SuperNode authentication: EC keys in OpenSSH format);
- `authorized_keys`: the public keys whose SuperNodes may join, one per line. It starts with the
  generated clients' keys; list a client's own public key there instead if it made its own.
A client host needs `ca.pem` and its own private key, nothing else.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.core.errors import ConfigError
from engine.net.certificates import (
    CA_CERT,
    SERVER_CERT,
    SERVER_KEY,
    certificate_authority,
    covers,
    write_private,
    write_server_certificate,
)

DEFAULT_FOLDER = "federation"
DEFAULT_PORT = 9092  # Flower's Fleet API port
AUTHORIZED_KEYS = "authorized_keys"
# recognised in --address, not bound here
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # nosec
PLAIN_TEXT_WARNING = (
    "serving in plain text (--insecure): anyone who can reach this address can join the run, "
    "read the model and send updates"
)
JOIN_PLAIN_TEXT_WARNING = (
    "warning: joining in plain text (--insecure): the server is not verified, and the model "
    "and this client's updates cross the network unencrypted"
)


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


def parse_address(text: str, what: str = "address") -> Address:
    """HOST:PORT (an IPv6 host in brackets); raises ConfigError naming `what`."""
    host, colon, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what} {text!r}: expected HOST:PORT with a port in 1-65535")
    return Address(host, int(port))


@dataclass(frozen=True)
class ServerFiles:
    """What the SuperLink is started with."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    authorized_keys: list[Path]  # one OpenSSH public key per file, as Flower registers them


def client_key(folder: Path, client: int | str) -> Path:
    return folder / f"client-{client}.key"


def prepare_server(folder: Path, listen: Address, num_clients: int) -> ServerFiles:
    """The CA, a server certificate naming every address of `listen`, and the authorized keys
    (split one per file under `folder/authorized`); a key pair for each client that has none
    when `authorized_keys` does not exist yet. Raises ConfigError on a bad authorized key."""
    authorized = folder / AUTHORIZED_KEYS
    listed = _authorized_lines(authorized) if authorized.exists() else None  # refused before
    folder.mkdir(parents=True, exist_ok=True)  # anything is written
    ca_key, ca_cert = certificate_authority(folder)
    names = server_names(listen.host)
    if not covers(folder / SERVER_CERT, folder / CA_CERT, names):
        write_server_certificate(folder, ca_key, ca_cert, names)
    if listed is None:
        listed = [_client_key_pair(folder, client) for client in range(num_clients)]
        authorized.write_text("".join(line + "\n" for line in listed))
    return ServerFiles(
        folder / CA_CERT,
        folder / SERVER_CERT,
        folder / SERVER_KEY,
        _one_key_a_file(listed, folder / "authorized"),
    )


def server_names(host: str) -> list[str]:
    """Every name a client may dial the SuperLink by: the host given, or on a wildcard every
    address of this machine's interfaces; loopback and the host name always."""
    names = [host] if host not in WILDCARD_HOSTS else _interface_addresses()
    return list(dict.fromkeys([*names, "127.0.0.1", "localhost", socket.gethostname()]))


def advertised_address(listen: Address) -> Address:
    """The address to tell clients: the one listened on, or for a wildcard this machine's first
    address beyond loopback."""
    if listen.host not in WILDCARD_HOSTS:
        return listen
    reachable = [
        name
        for name in _interface_addresses()
        if not (ip := ipaddress.ip_address(name)).is_loopback and not ip.is_link_local
    ]
    reachable.sort(key=lambda name: ":" in name)  # IPv4 first
    return Address(reachable[0] if reachable else socket.gethostname(), listen.port)


def check_public_key(line: str, where: str) -> None:
    try:
        key = serialization.load_ssh_public_key(line.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ConfigError(f"{where}: not an OpenSSH public key ({err})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{where}: Flower's SuperNode authentication needs an EC key")


def check_private_key(path: Path) -> None:
    """Raise ConfigError unless `path` is an EC private key in OpenSSH format."""
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except OSError as err:
        raise ConfigError(f"--key {path}: {err.strerror}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"--key {path}: not an OpenSSH private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"--key {path}: Flower's SuperNode authentication needs an EC key")


def generate_client_key(path: Path) -> str:
    """A new EC key pair: the private key at `path`, the public one beside it (`.pub`);
    returns the public key's line."""
    key = ec.generate_private_key(ec.SECP384R1())
    write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    path.with_suffix(".pub").write_bytes(public + b"\n")
    return public.decode()


def _client_key_pair(folder: Path, client: int) -> str:
    path = client_key(folder, client)
    if path.exists():
        return path.with_suffix(".pub").read_text().strip()
    return generate_client_key(path)


def _authorized_lines(authorized: Path) -> list[str]:
    """The public keys listed (blank lines and # comments aside); ConfigError on a bad one."""
    lines = []
    for number, line in enumerate(authorized.read_text().splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            check_public_key(line.strip(), f"{authorized}, line {number}")
            lines.append(line.strip())
    if not lines:
        raise ConfigError(f"{authorized}: no public keys listed: no client could join")
    return lines


def _one_key_a_file(lines: list[str], out: Path) -> list[Path]:
    """`flwr supernode register` takes one key file per node."""
    out.mkdir(exist_ok=True)
    for stale in out.glob("*.pub"):
        stale.unlink()
    files = [out / f"key-{number}.pub" for number in range(len(lines))]
    for path, line in zip(files, lines):
        path.write_text(line + "\n")
    return files


def _interface_addresses() -> list[str]:
    return [
        address.address.split("%")[0]
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
        if address.family in (socket.AF_INET, socket.AF_INET6)
    ]


@dataclass(frozen=True)
class ServeSettings:
    """`fedtui serve`: where the SuperLink listens, where the federation's files are, and how
    long the clients have to join."""

    listen: Address
    folder: Path
    insecure: bool = False
    join_timeout_s: float = 600.0

    def to_json(self) -> dict:
        return {
            "listen": str(self.listen),
            "folder": str(self.folder.absolute()),
            "insecure": self.insecure,
            "join_timeout_s": self.join_timeout_s,
        }

    @classmethod
    def from_json(cls, data: dict) -> ServeSettings:
        return cls(
            parse_address(data["listen"]),
            Path(data["folder"]),
            bool(data["insecure"]),
            float(data["join_timeout_s"]),
        )

    def check_listen(self) -> None:
        """Raise ConfigError when this machine cannot listen on the address."""
        family = socket.AF_INET6 if ":" in self.listen.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.listen.host, self.listen.port))
            except OSError as err:
                raise ConfigError(
                    f"--address {self.listen}: cannot listen ({err.strerror})"
                ) from None


def join_command_line(settings: ServeSettings, files: ServerFiles | None) -> str:
    """What a client host runs to join: one line, I standing for its partition id."""
    command = f"fedtui join {advertised_address(settings.listen)} --partition-id I"
    if files is None:
        return command + " --insecure"
    generated = client_key(settings.folder, 0).exists()
    key = client_key(settings.folder.absolute(), "I") if generated else "YOUR_KEY"
    return f"{command} --ca {files.ca_cert.absolute()} --key {key}"
