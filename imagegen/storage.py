"""Result storage: every succeeded job's images are copied into our storage before it is marked
succeeded (upstream URLs expire). A local directory by default (``IMAGEGEN_RESULTS_DIR``), or an
S3-compatible bucket (``IMAGEGEN_S3_BUCKET``, through boto3). Each file is recorded with its sha256,
size, content type and dimensions, all read from the bytes (a declared type is not trusted: bytes that
are not a PNG, JPEG, WebP or GIF are never stored as a result); keys are ``<job id>/<index><ext>``, so a
retried store overwrites instead of duplicating.

``ResultStore.locate`` says how a client gets a stored file back: a local file to stream, or a
presigned URL to redirect to (``IMAGEGEN_S3_PRESIGN_S``). A recorded path is never trusted: one that is
not this store's own (outside the results directory, another bucket or prefix) locates nothing.

Uploaded reference images live beside the results under ``uploads/<sha256>.<ext>``; a provider that
fetches references by URL is given ``upload_url``, signed per upload, which ``imagegen api`` serves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import stat
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, UnidentifiedImageError

from config.settings import Settings
from imagegen.errors import NotAnImage

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}
_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True)
class StoredFile:
    """One stored result file, as listed in a job's ``result``."""

    path: str
    sha256: str
    size: int
    content_type: str
    width: int | None
    height: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the job row."""
        return asdict(self)


@dataclass(frozen=True)
class LocalFile:
    """A stored result on this host's filesystem (streamed to the client); ``stat`` is its ``os.stat``."""

    path: Path
    stat: os.stat_result


@dataclass(frozen=True)
class RemoteFile:
    """A stored result the client downloads from elsewhere: a URL to redirect to (it expires)."""

    url: str


#: How a client gets a stored result.
Location = LocalFile | RemoteFile


class ResultStore(Protocol):
    """Where result bytes go, and how a client gets them back."""

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` under ``key``; returns the path or URI it can be read from."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key`` (``FileNotFoundError`` if none)."""
        ...

    def locate(self, path: str, *, job_id: str | None = None) -> Location | None:
        """How a client fetches the file recorded as ``path`` (what ``put`` returned); ``None`` when the
        file is gone or ``path`` is not one of this store's own (a tampered or foreign row), or, with
        ``job_id``, not one of that job's files (keys are ``<job id>/<index><ext>``)."""
        ...

    def read(self, path: str, *, job_id: str) -> bytes | None:
        """The bytes of the file recorded as ``path``, checked like ``locate``; ``None`` when it is gone."""
        ...


class LocalStore:
    """A directory on a filesystem every worker shares (one host, or a network mount)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Write atomically (temp file + rename), so a reader never sees half a file."""
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(target)

    def get(self, key: str) -> bytes:
        """Read a stored file."""
        return (self.root / key).read_bytes()

    def locate(self, path: str, *, job_id: str | None = None) -> LocalFile | None:
        """The regular file at ``path`` if it lies inside the results directory, or inside ``job_id``'s
        directory of it when given (symlinks resolved)."""
        resolved = contained(path, self.root / job_id if job_id else self.root)
        if resolved is None:
            return None
        try:
            info = resolved.stat()
        except OSError:
            return None
        return LocalFile(resolved, info) if stat.S_ISREG(info.st_mode) else None

    def read(self, path: str, *, job_id: str) -> bytes | None:
        """The file at ``path``, if ``locate`` finds it among ``job_id``'s."""
        found = self.locate(path, job_id=job_id)
        try:
            return found.path.read_bytes() if found is not None else None
        except OSError:
            return None


def contained(path: str, root: Path) -> Path | None:
    """``path`` resolved (symlinks followed, ``..`` collapsed) if that lies strictly inside ``root``;
    ``None`` otherwise, so a crafted row cannot make us serve ``/etc/passwd``. A relative path is taken
    from the working directory, as ``LocalStore.put`` wrote it under a relative ``root``."""
    if not path or "://" in path or "\0" in path:
        return None
    try:
        base = root.resolve()
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, an unreadable directory
        return None
    if resolved == base or not resolved.is_relative_to(base):
        return None
    return resolved


def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client that signs with SigV4, presigned URLs included (botocore may presign with the
    legacy SigV2 otherwise, which regions opened since 2014 refuse); credentials are boto3's own lookup."""
    import boto3  # optional dependency: pip install 'imagegen-queue[s3]'
    from botocore.config import Config

    config = Config(signature_version="s3v4")
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


class S3Store:
    """An S3-compatible bucket (AWS, MinIO, R2...) through boto3; request signing is boto3's job."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        presign_s: int = 3600,
        client: Any = None,
    ) -> None:
        self.client = client if client is not None else s3_client(endpoint_url, region)
        self.bucket = bucket
        self.prefix = prefix
        self.presign_s = presign_s

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Upload with the content type and a SHA-256 checksum the service verifies."""
        full = self.prefix + key
        self.client.put_object(
            Bucket=self.bucket, Key=full, Body=data, ContentType=content_type, ChecksumAlgorithm="SHA256"
        )
        return f"s3://{self.bucket}/{full}"

    def get(self, key: str) -> bytes:
        """Download a stored object."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None
        body: bytes = response["Body"].read()
        return body

    def locate(self, path: str, *, job_id: str | None = None) -> RemoteFile | None:
        """A GET URL presigned for ``presign_s`` seconds, for an object of this bucket under this prefix.

        No request to the service: signing is local (a deleted object answers 404 at the URL itself).
        """
        key = self._own_key(path, job_id)
        if key is None:
            return None
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.presign_s
        )
        return RemoteFile(url)

    def read(self, path: str, *, job_id: str) -> bytes | None:
        """The object recorded as ``path``, if it is one of ``job_id``'s under this prefix."""
        key = self._own_key(path, job_id)
        if key is None:
            return None
        try:
            return self.get(key[len(self.prefix) :])
        except FileNotFoundError:
            return None

    def _own_key(self, path: str, job_id: str | None) -> str | None:
        """The object key of ``path`` if it is ours (and ``job_id``'s, when given), else None."""
        head = f"s3://{self.bucket}/"
        key = path[len(head) :] if path.startswith(head) else ""
        if not key.startswith(self.prefix) or _odd_key(key[len(self.prefix) :]):
            return None
        if job_id is not None and not key[len(self.prefix) :].startswith(f"{job_id}/"):
            return None  # another job's object: a tampered row never reaches it
        return key


def _odd_key(key: str) -> bool:
    # Our keys are "<job id>/<index><ext>" after the prefix: no empty, "." or ".." segments, no control characters
    # (S3 keeps them literally, but a proxy or an S3-compatible service in front may not).
    return any(part in ("", ".", "..") for part in key.split("/")) or any(ord(c) < 32 for c in key)


def build_store(settings: Settings) -> ResultStore:
    """The configured store: S3 when a bucket is set, else the local results directory."""
    if settings.imagegen_s3_bucket:
        return S3Store(
            settings.imagegen_s3_bucket,
            prefix=settings.imagegen_s3_prefix,
            endpoint_url=settings.imagegen_s3_endpoint_url,
            region=settings.imagegen_s3_region,
            presign_s=settings.imagegen_s3_presign_s,
        )
    return LocalStore(settings.results_dir)


def inspect_image(data: bytes, declared_type: str | None) -> tuple[str, int | None, int | None]:
    """``(content type, width, height)`` from the bytes themselves (the declared type is a fallback)."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            return _FORMATS.get(image.format or "", declared_type or "application/octet-stream"), *image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return declared_type or "application/octet-stream", None, None


def image_info(data: bytes) -> tuple[str, int, int]:
    """``(content type, width, height)`` of an image in a format we store; ``NotAnImage`` otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            content_type = _FORMATS.get(image.format or "")
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise NotAnImage(f"the bytes are not an image ({type(exc).__name__})") from None
    if content_type is None:
        raise NotAnImage(f"the bytes are a {image.format} image, not PNG, JPEG, WebP or GIF")
    return content_type, width, height


def store_image(store: ResultStore, job_id: str, index: int, data: bytes, declared_type: str | None) -> StoredFile:
    """Store one result image and describe it (its type from the bytes; ``declared_type`` is not trusted).

    Raises ``NotAnImage`` for bytes that are not a PNG, JPEG, WebP or GIF: never stored as a result.
    """
    content_type, width, height = image_info(data)
    key = result_key(job_id, index, content_type)
    path = store.put(key, data, content_type)
    return StoredFile(path, hashlib.sha256(data).hexdigest(), len(data), content_type, width, height)


def result_key(job_id: str, index: int, content_type: str) -> str:
    """The key a job's ``index``-th result is stored under (``store.get`` reads it back)."""
    return f"{job_id}/{index}{_EXTENSIONS.get(content_type, '.bin')}"


def reference_key(data: bytes) -> tuple[str, str]:
    """The content-addressed key (``uploads/<sha256>.<ext>``) and type of a local reference image."""
    content_type, _, _ = inspect_image(data, None)
    ext = _EXTENSIONS.get(content_type)
    if ext not in (".png", ".jpg", ".webp"):
        raise ValueError("must be a PNG, JPEG or WebP image")
    return f"uploads/{hashlib.sha256(data).hexdigest()}{ext}", content_type


#: Where ``imagegen api`` serves uploads to providers that fetch reference images by URL (apidot).
UPLOADS_ROUTE = "/uploads"


def upload_token(key: bytes, upload: str) -> str:
    """The token that lets a provider fetch one upload (``uploads/<sha256>.<ext>``) from us, and no other."""
    digest = hmac.new(key, b"upload:" + upload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def upload_token_ok(key: bytes, upload: str, token: str | None) -> bool:
    """Whether ``token`` is ``upload``'s (constant-time compare)."""
    return hmac.compare_digest((token or "").encode(), upload_token(key, upload).encode())


def upload_url(public_url: str | None, key: bytes | None, upload: str) -> str | None:
    """The signed URL of an upload under ``public_url`` (``IMAGEGEN_PUBLIC_URL``); None without one, or
    without a signing key (``Settings.upload_token_key``)."""
    if not public_url or key is None:
        return None
    name = upload.removeprefix("uploads/")
    return f"{public_url.rstrip('/')}{UPLOADS_ROUTE}/{name}?token={upload_token(key, upload)}"
