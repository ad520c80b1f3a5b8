"""MQTT over TLS with a username and password, against a real mosquitto set up by the test: a
private CA, a server certificate for 127.0.0.1 and a password file."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from wire.broker import BrokerSettings
from wire.mqtt import Publisher, Subscriber
from zayton.localservers import _mosquitto_binary, free_port, tcp_answers

pytestmark = pytest.mark.integration


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    mosquitto = _mosquitto_binary()
    if mosquitto is None or shutil.which("openssl") is None or not shutil.which("mosquitto_passwd"):
        pytest.skip("needs mosquitto, mosquitto_passwd and openssl")
    root = tmp_path_factory.mktemp("tls")
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
         "-out", "ca.pem", "-days", "2", "-subj", "/CN=zayton test CA", cwd=root)  # fmt: skip
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
         "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=root)  # fmt: skip
    (root / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.cnf",
         cwd=root)  # fmt: skip
    _run("mosquitto_passwd", "-b", "-c", "passwords", "gateway", "s3cret", cwd=root)
    port = free_port()
    (root / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {root}/ca.pem\ncertfile {root}/server.pem\nkeyfile {root}/server.key\n"
        f"allow_anonymous false\npassword_file {root}/passwords\nuser root\n"
    )
    proc = subprocess.Popen(
        [mosquitto, "-c", str(root / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if tcp_answers("127.0.0.1", port, timeout=0.2):
                break
            proc.poll()
            assert proc.returncode is None, "mosquitto did not start with the TLS config"
        yield port, root / "ca.pem"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _round_trip(url: str, topic: str, wait_s: float = 5.0) -> bytes | None:
    settings = BrokerSettings.from_url(url)
    async with Subscriber(settings, client_id=f"sub-{topic}", filters=[topic]) as subscriber:
        try:
            async with asyncio.timeout(wait_s):
                await subscriber.subscribed.wait()
        except TimeoutError:
            return None
        async with Publisher(settings, client_id=f"pub-{topic}") as publisher:
            async with asyncio.timeout(5):
                await publisher.publish(topic, b"over tls")
        async with asyncio.timeout(5):
            message = await subscriber.get()
        subscriber.ack([message])
        return message.payload


def test_a_batch_crosses_tls_with_a_password(tls_broker: tuple[int, Path]) -> None:
    port, ca = tls_broker
    url = f"mqtts://gateway:s3cret@127.0.0.1:{port}?ca={ca}"
    assert asyncio.run(_round_trip(url, "zt-tls/ok")) == b"over tls"


@pytest.mark.parametrize(
    "credentials", ["gateway:wrong@", ""], ids=["wrong password", "no credentials"]
)
def test_the_broker_refuses_a_client_without_the_password(
    tls_broker: tuple[int, Path], credentials: str
) -> None:
    port, ca = tls_broker
    url = f"mqtts://{credentials}127.0.0.1:{port}?ca={ca}"
    assert asyncio.run(_round_trip(url, "zt-tls/refused", wait_s=1.5)) is None


# paho leaves the socket of a failed TLS handshake to the garbage collector, which warns.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_untrusted_certificate_is_refused(tls_broker: tuple[int, Path]) -> None:
    port, _ = tls_broker
    # Without the private CA the system's trust store cannot verify the broker.
    url = f"mqtts://gateway:s3cret@127.0.0.1:{port}"
    assert asyncio.run(_round_trip(url, "zt-tls/untrusted", wait_s=1.5)) is None
