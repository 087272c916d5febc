"""A real registry for tests: Debian's `docker-registry` on 127.0.0.1, a free port, temp storage.

    with RegistryServer(tmp_path, tls=True, users={"alice": "secret"}) as registry:
        registry.host        # "127.0.0.1:PORT"
        registry.ca_file     # the CA that signed its certificate (tls=True)
        registry.blob_file(digest)   # the storage file behind a blob

Our own config file (the Debian one at /etc/docker/registry/config.yml is the model),
our own process, stopped by its PID. TLS material is made with `openssl`; passwords
with `htpasswd -B` (bcrypt).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REGISTRY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca_and_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `host` signed by it: (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
        "-keyout", str(key), "-out", str(csr))  # fmt: skip
    ext.write_text(
        f"subjectAltName=IP:{host},DNS:localhost\n"
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, cert, key


class RegistryServer:
    def __init__(
        self,
        workdir: Path,
        *,
        tls: bool = False,
        users: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage = self.workdir / "storage"
        self.tls = tls
        self.users = users or {}
        self.ca_file: Path | None = None
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log = self.workdir / "registry.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: test-{os.getpid()}",
        ]
        if self.tls:
            ca, cert, key = make_ca_and_cert(self.workdir / "tls")
            self.ca_file = ca
            lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
        if self.users:
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    ["htpasswd", "-B", "-b", str(htpasswd), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["auth:", "  htpasswd:", "    realm: test-registry", f"    path: {htpasswd}"]
        return "\n".join(lines) + "\n"

    def start(self) -> RegistryServer:
        for _attempt in range(5):  # another process may take the port between probe and bind
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(self._config())
            with open(self.log, "ab") as log:
                self.process = subprocess.Popen(
                    [REGISTRY, "serve", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"docker-registry did not start: {self.log.read_text()[-2000:]}")

    def _wait_ready(self, timeout: float = 20.0) -> bool:
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=context).read()
                return True
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, and asking for credentials
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ storage

    def blob_file(self, digest: str) -> Path:
        """The file the filesystem driver keeps a blob's bytes in."""
        algorithm, hexpart = digest.split(":")
        return (
            self.storage / "docker/registry/v2/blobs" / algorithm / hexpart[:2] / hexpart / "data"
        )
