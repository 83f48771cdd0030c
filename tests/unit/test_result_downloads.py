"""The parts of result downloads that need no server: hrefs, the job JSON's result entries, ETag
matching, and which recorded paths a store will serve (a crafted row must never reach /etc/passwd)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from imagegen.api.images import etag_matches
from imagegen.jobview import image_href, result_entries
from imagegen.storage import LocalFile, LocalStore, RemoteFile, S3Store, contained

JOB = "5b1f7c3e-2d7a-4c1e-9a55-0f3b8e6d2a41"
SHA = "ab" * 32


# --- hrefs and result entries ---------------------------------------------------------------------


def test_with_a_job_id_only_that_jobs_objects_are_presigned(bucket: S3Store) -> None:
    other = "00000000-0000-4000-8000-00000000000b"
    assert isinstance(bucket.locate(f"s3://results/imagegen/{JOB}/0.png", job_id=JOB), RemoteFile)
    assert bucket.locate(f"s3://results/imagegen/{other}/0.png", job_id=JOB) is None
    assert bucket.locate("s3://results/imagegen/uploads/abc.png", job_id=JOB) is None


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        (None, f"/v1/jobs/{JOB}/images/2"),
        ("", f"/v1/jobs/{JOB}/images/2"),
        ("https://imagegen.example.com", f"https://imagegen.example.com/v1/jobs/{JOB}/images/2"),
        ("https://imagegen.example.com/", f"https://imagegen.example.com/v1/jobs/{JOB}/images/2"),
        ("https://example.com/imagegen/", f"https://example.com/imagegen/v1/jobs/{JOB}/images/2"),
    ],
)
def test_href_is_a_path_or_absolute_under_the_public_url(public_url: str | None, expected: str) -> None:
    assert image_href(JOB, 2, public_url) == expected


def test_result_entries_keep_every_key_and_add_the_stored_copy() -> None:
    stored = {
        "url": "https://cdn.example/a.png",
        "path": "/srv/results/x/0.png",
        "sha256": SHA,
        "size": 1234,
        "content_type": "image/png",
        "width": 64,
        "height": 32,
    }
    pending = {"url": "https://cdn.example/b.png", "path": None}
    entries = result_entries(JOB, [stored, pending], "https://api.example")
    assert entries[0] == {
        "url": "https://cdn.example/a.png",
        "path": "/srv/results/x/0.png",
        "sha256": SHA,
        "bytes": 1234,
        "content_type": "image/png",
        "width": 64,
        "height": 32,
        "href": f"https://api.example/v1/jobs/{JOB}/images/0",
    }
    # Not stored yet: the same keys, nulls, and no href (the download would be a 404).
    assert entries[1] == {
        "url": "https://cdn.example/b.png",
        "path": None,
        "sha256": None,
        "bytes": None,
        "content_type": None,
        "width": None,
        "height": None,
        "href": None,
    }


def test_result_entries_of_odd_rows_render() -> None:
    assert result_entries(JOB, None) == []
    assert result_entries(JOB, {"not": "a list"}) == []
    assert result_entries(JOB, ["junk"])[0]["href"] is None


# --- If-None-Match --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ("", False),
        (f'"{SHA}"', True),
        (f'W/"{SHA}"', True),
        (f'"other", "{SHA}"', True),
        ("*", True),
        (SHA, False),  # unquoted is not that entity tag
        ('"other"', False),
    ],
)
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert etag_matches(header, f'"{SHA}"') is matches


# --- which local paths are served -----------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    (results / JOB).mkdir(parents=True)
    (results / JOB / "0.png").write_bytes(b"png bytes")
    (tmp_path / "secret.txt").write_text("not a result")
    return results


def test_a_file_inside_the_results_directory_is_served(root: Path) -> None:
    located = LocalStore(root).locate(str(root / JOB / "0.png"))
    assert isinstance(located, LocalFile)
    assert located.path == (root / JOB / "0.png").resolve() and located.stat.st_size == 9


def test_with_a_job_id_only_that_jobs_files_are_served(root: Path) -> None:
    other = "00000000-0000-4000-8000-00000000000b"
    (root / other).mkdir()
    (root / other / "0.png").write_bytes(b"b's image")
    store = LocalStore(root)
    assert isinstance(store.locate(str(root / JOB / "0.png"), job_id=JOB), LocalFile)
    assert store.locate(str(root / other / "0.png"), job_id=JOB) is None
    assert store.locate(str(root / JOB / ".." / other / "0.png"), job_id=JOB) is None


def test_a_relative_path_is_taken_from_the_working_directory(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # LocalStore.put under a relative IMAGEGEN_RESULTS_DIR records a relative path.
    monkeypatch.chdir(root.parent)
    assert isinstance(LocalStore(Path("results")).locate(f"results/{JOB}/0.png"), LocalFile)


@pytest.mark.parametrize(
    "crafted",
    [
        "/etc/passwd",
        "{root}/../secret.txt",
        "{root}/{job}/../../secret.txt",
        "{root}",
        "{root}/{job}",  # a directory
        "{root}/{job}/9.png",  # gone
        "s3://bucket/imagegen/{job}/0.png",
        "file:///etc/passwd",
        "{root}/{job}/0.png\0.txt",
        "",
    ],
)
def test_paths_outside_the_results_directory_are_refused(root: Path, crafted: str) -> None:
    path = crafted.format(root=root, job=JOB)
    assert LocalStore(root).locate(path) is None


def test_a_symlink_out_of_the_results_directory_is_refused(root: Path) -> None:
    link = root / JOB / "1.png"
    link.symlink_to(root.parent / "secret.txt")
    assert contained(str(link), root) is None
    assert LocalStore(root).locate(str(link)) is None


def test_a_results_directory_reached_through_a_symlink_still_serves(root: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    assert isinstance(LocalStore(alias).locate(str(alias / JOB / "0.png")), LocalFile)


def test_a_symlink_loop_is_refused(root: Path) -> None:
    loop = root / JOB / "loop.png"
    os.symlink(loop, loop)
    assert LocalStore(root).locate(str(loop)) is None


# --- which S3 paths are presigned (signing is local: no service needed) ---------------------------


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> S3Store:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return S3Store("results", prefix="imagegen/", endpoint_url="http://127.0.0.1:1", region="eu-west-1", presign_s=120)


def test_an_object_of_the_bucket_and_prefix_is_presigned(bucket: S3Store) -> None:
    located = bucket.locate(f"s3://results/imagegen/{JOB}/0.png")
    assert isinstance(located, RemoteFile)
    url = urlsplit(located.url)
    assert url.path == f"/results/imagegen/{JOB}/0.png"
    assert parse_qs(url.query)["X-Amz-Expires"] == ["120"]


@pytest.mark.parametrize(
    "crafted",
    [
        f"s3://other-bucket/imagegen/{JOB}/0.png",
        f"s3://results/elsewhere/{JOB}/0.png",
        "s3://results/imagegen/",
        f"s3://results/imagegen/../{JOB}/0.png",
        f"s3://results/imagegen/{JOB}//0.png",
        f"s3://results/imagegen/{JOB}/0.png\n",
        f"/srv/results/{JOB}/0.png",
        "/etc/passwd",
    ],
)
def test_foreign_s3_paths_are_refused(bucket: S3Store, crafted: str) -> None:
    assert bucket.locate(crafted) is None
