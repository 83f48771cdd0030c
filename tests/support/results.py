"""Jobs with stored results for the API tier: the real store writes the files, the row records them the
way the finalizer does (``{"url", **StoredFile.to_dict()}``), so the download route sees real entries."""

from __future__ import annotations

import io
from typing import Any

import sqlalchemy as sa
from PIL import Image

from imagegen.producer import create_job
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.storage import store_image
from imagegen.store.models import Job, utcnow


def image_bytes(width: int, height: int, fmt: str = "PNG", color: str = "teal") -> bytes:
    """A small real image in ``fmt``."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format=fmt)
    return out.getvalue()


def finished_job(rt: Runtime, images: list[bytes], *, pending: int = 0) -> tuple[str, list[dict[str, Any]]]:
    """A succeeded job whose ``images`` are stored through ``rt.store``, followed by ``pending`` entries
    still to download; returns its id and ``result``."""
    job, _ = create_job(rt, ImageRequest(prompt="a stored picture"))
    result: list[dict[str, Any]] = []
    for index, data in enumerate(images):
        stored = store_image(rt.store, job.id, index, data, None)
        result.append({"url": f"https://cdn.example/{index}.png", **stored.to_dict()})
    result += [{"url": f"https://cdn.example/{len(images) + i}.png", "path": None} for i in range(pending)]
    set_result(rt, job.id, result)
    return job.id, result


def set_result(rt: Runtime, job_id: str, result: list[dict[str, Any]]) -> None:
    """Write a job's ``result`` (and mark it succeeded), as a crafted or migrated row could look."""
    with rt.session() as s:
        s.execute(
            sa.update(Job).where(Job.id == job_id).values(status="succeeded", result=result, finished_at=utcnow())
        )
