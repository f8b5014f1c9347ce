"""The federation's files: a CA of its own, a server certificate naming every address clients
dial, client key pairs, and the authorized keys the SuperLink registers."""

import contextlib
import datetime
import os
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from engine.core.errors import ConfigError
from engine.net import certificates, federation
from engine.net.federation import Address, parse_address, prepare_server


def names_in(cert_path):
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} | set(
        san.get_values_for_type(x509.DNSName)
    )


def issuer_signed(cert_path, ca_path):
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    cert.verify_directly_issued_by(ca)  # raises when it is not
    return True


def test_a_first_serve_writes_a_ca_a_server_certificate_and_a_key_pair_per_client(tmp_path):
    files = prepare_server(tmp_path / "fed", parse_address("10.213.0.1:9092"), num_clients=3)

    assert issuer_signed(files.server_cert, files.ca_cert)
    assert {"10.213.0.1", "127.0.0.1", "localhost"} <= names_in(files.server_cert)
    for client in range(3):
        key = federation.client_key(tmp_path / "fed", client)
        federation.check_private_key(key)  # Flower's format: an EC key in OpenSSH form
        assert key.stat().st_mode & 0o077 == 0  # private keys: the owner's alone
    listed = (tmp_path / "fed" / "authorized_keys").read_text().splitlines()
    assert listed == [
        federation.client_key(tmp_path / "fed", c).with_suffix(".pub").read_text().strip()
        for c in range(3)
    ]
    assert [path.read_text().strip() for path in files.authorized_keys] == listed


def test_a_new_address_gets_a_new_server_certificate_from_the_same_ca(tmp_path):
    first = prepare_server(tmp_path, parse_address("10.213.0.1:9092"), 2)
    ca, client_key = first.ca_cert.read_bytes(), federation.client_key(tmp_path, 0).read_bytes()
    kept = first.server_cert.read_bytes()

    again = prepare_server(tmp_path, parse_address("10.213.0.1:9092"), 2)
    assert again.server_cert.read_bytes() == kept  # already names it
    moved = prepare_server(tmp_path, parse_address("10.9.9.9:9092"), 2)

    assert moved.ca_cert.read_bytes() == ca  # clients' ca.pem stays valid
    assert federation.client_key(tmp_path, 0).read_bytes() == client_key
    assert "10.9.9.9" in names_in(moved.server_cert)
    assert issuer_signed(moved.server_cert, moved.ca_cert)


def test_a_wildcard_address_is_named_by_every_interface_address(tmp_path):
    files = prepare_server(tmp_path, parse_address("0.0.0.0:9092"), 1)
    names = names_in(files.server_cert)
    advertised = federation.advertised_address(parse_address("0.0.0.0:9092"))

    assert "127.0.0.1" in names  # the SuperLink's own SuperExec dials loopback
    assert advertised.host in names  # the address the join command names verifies
    assert advertised.host not in ("127.0.0.1", "::1", "0.0.0.0")


def test_the_server_owner_lists_who_may_join(tmp_path):
    own = federation.generate_client_key(tmp_path / "laptop.key")
    (tmp_path / "authorized_keys").write_text(f"# the lab's laptop\n{own}\n\n")

    files = prepare_server(tmp_path, parse_address("127.0.0.1:9092"), 4)

    assert [path.read_text().strip() for path in files.authorized_keys] == [own]
    assert not federation.client_key(tmp_path, 0).exists()  # none generated beside a list


@pytest.mark.parametrize(
    "listed, says",
    [
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
         "needs an EC key"),
        ("not a key at all\n", "line 1: not an OpenSSH public key"),
        ("# nobody yet\n", "no public keys listed"),
    ],
)  # fmt: skip
def test_a_bad_authorized_keys_file_is_refused_before_anything_is_written(tmp_path, listed, says):
    (tmp_path / "authorized_keys").write_text(listed)

    with pytest.raises(ConfigError, match=says):
        prepare_server(tmp_path, parse_address("127.0.0.1:9092"), 2)
    assert [path.name for path in tmp_path.iterdir()] == ["authorized_keys"]


@pytest.mark.parametrize(
    "text, address",
    [
        ("10.0.0.1:9092", Address("10.0.0.1", 9092)),
        ("[::1]:9092", Address("::1", 9092)),
        ("server.lab:1", Address("server.lab", 1)),
    ],
)
def test_addresses_are_host_and_port(text, address):
    assert parse_address(text) == address
    assert parse_address(str(address)) == address


@pytest.mark.parametrize("text", ["10.0.0.1", "10.0.0.1:0", "host:70000", "host:port"])
def test_an_address_without_a_usable_port_is_refused(text):
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        parse_address(text, "--address")


def test_the_join_command_names_the_files_a_client_host_needs(tmp_path):
    settings = federation.ServeSettings(parse_address("10.213.0.1:9092"), tmp_path)
    files = prepare_server(tmp_path, settings.listen, 2)

    command = federation.join_command_line(settings, files)

    assert command == (
        f"fedtui join 10.213.0.1:9092 --partition-id I --ca {tmp_path}/ca.pem "
        f"--key {tmp_path}/client-I.key"
    )
    insecure = federation.ServeSettings(settings.listen, tmp_path, insecure=True)
    assert federation.join_command_line(insecure, None).endswith("--partition-id I --insecure")


def handshake(files, verify_flags, server_name="127.0.0.1"):
    """A TLS handshake with a server holding `files`' certificate, verified against the CA as
    a client verifies it; raises ssl.SSLError when verification fails."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files.server_cert, files.server_key)
    client_context = ssl.create_default_context(cafile=str(files.ca_cert))
    client_context.verify_flags |= verify_flags
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve():
            connection, _ = listener.accept()
            with contextlib.suppress(ssl.SSLError, OSError):
                server_context.wrap_socket(connection, server_side=True).close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
                client_context.wrap_socket(raw, server_hostname=server_name).close()
        finally:
            thread.join(timeout=30)


def test_the_served_certificate_verifies_under_strict_x509_checks(tmp_path):
    files = prepare_server(tmp_path / "fed", parse_address("127.0.0.1:9092"), num_clients=1)

    handshake(files, ssl.VERIFY_X509_STRICT)  # Python 3.13's default for clients

    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign


def test_a_federation_made_before_the_extensions_is_brought_up_to_them(tmp_path):
    folder = tmp_path / "fed"
    prepare_server(folder, parse_address("127.0.0.1:9092"), num_clients=1)
    ca_key = (folder / certificates.CA_KEY).read_bytes()
    bare = x509.load_pem_x509_certificate((folder / certificates.CA_CERT).read_bytes())
    key = serialization.load_pem_private_key(ca_key, password=None)
    old_ca = (  # as fedtui wrote a CA before: no key identifiers, no key usage
        x509.CertificateBuilder()
        .subject_name(bare.subject)
        .issuer_name(bare.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(bare.not_valid_before_utc)
        .not_valid_after(bare.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / certificates.CA_CERT).write_bytes(old_ca.public_bytes(serialization.Encoding.PEM))

    files = prepare_server(folder, parse_address("127.0.0.1:9092"), num_clients=1)

    assert (folder / certificates.CA_KEY).read_bytes() == ca_key  # the same CA, re-issued
    handshake(files, ssl.VERIFY_X509_STRICT)


def test_an_expired_ca_is_refused_naming_what_to_do(tmp_path):
    folder = tmp_path / "fed"
    prepare_server(folder, parse_address("127.0.0.1:9092"), num_clients=1)
    key = serialization.load_pem_private_key(
        (folder / certificates.CA_KEY).read_bytes(), password=None
    )
    subject = x509.load_pem_x509_certificate((folder / certificates.CA_CERT).read_bytes()).subject
    long_ago = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(long_ago)
        .not_valid_after(long_ago + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / certificates.CA_CERT).write_bytes(expired.public_bytes(serialization.Encoding.PEM))

    with pytest.raises(ConfigError, match=r"ca.pem expired on 2020-12-31"):
        prepare_server(folder, parse_address("127.0.0.1:9092"), num_clients=1)


def test_a_key_file_that_was_readable_by_others_is_the_owners_alone_once_written(tmp_path):
    folder = tmp_path / "fed"
    folder.mkdir()
    (folder / certificates.SERVER_KEY).write_text("an old key")
    os.chmod(folder / certificates.SERVER_KEY, 0o644)

    files = prepare_server(folder, parse_address("127.0.0.1:9092"), num_clients=1)

    assert files.server_key.stat().st_mode & 0o777 == 0o600
