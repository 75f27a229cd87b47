"""The admins' cost upload (`/admin/costs`): a cost file or an ad platform's export, read like
`calltrack costs import` reads it, stored by the same replace rule; and what is stored, per
month and source."""

from __future__ import annotations

import asyncio
from pathlib import PurePath

from aiohttp import BodyPartReader, web

from attribution.costs import PRESETS, CostFile, CostFileError, layout_for, read_costs
from pbx.auth import StaffUser, check_csrf, require_user
from pbx.http import refuse_unstorable
from pbx.keys import CLOCK, ENGINE, SETTINGS
from pbx.staff_ui.views import render
from pbx.storage.costs import monthly_totals, replace_costs

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a year of daily costs for hundreds of campaigns; more: CLI
MAX_FIELD_CHARS = 1000
MAX_NAME = 120


async def costs_page(request: web.Request) -> web.Response:
    user = await require_user(request, admin=True)
    return await _page(request, user)


async def _page(
    request: web.Request,
    user: StaffUser,
    status: int = 200,
    form: dict[str, str] | None = None,
    problems: list[str] | None = None,
    imported: CostFile | None = None,
    dry_run: bool = False,
) -> web.Response:
    return render(
        request,
        "costs.html",
        status,
        user=user,
        presets=sorted(PRESETS),
        form=form or {},
        problems=problems or [],
        imported=imported,
        dry_run=dry_run,
        currency=request.app[SETTINGS].currency,
        months=await monthly_totals(request.app[ENGINE]),
        max_mb=MAX_UPLOAD_BYTES // 2**20,
    )


async def upload_costs(request: web.Request) -> web.Response:
    user = await require_user(request, admin=True)
    form, upload = await _read_upload(request)
    check_csrf(user.csrf, form.get("csrf"))
    if upload is None:
        return await _page(request, user, 400, form, ["Choose a CSV file to upload."])
    name, data = upload
    try:
        layout = layout_for(
            form.get("preset") or None,
            form.get("map") or None,
            form.get("source") or None,
            form.get("medium") or None,
        )
        cost_file = await asyncio.to_thread(read_costs, data, name, layout)
    except CostFileError as exc:
        return await _page(request, user, 400, form, exc.text().splitlines())
    dry_run = form.get("dry_run") == "1"
    if not dry_run:
        await replace_costs(request.app[ENGINE], cost_file, request.app[CLOCK]())
    return await _page(request, user, 200, form, imported=cost_file, dry_run=dry_run)


async def _read_upload(request: web.Request) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    """The form's fields and its file, reading at most MAX_UPLOAD_BYTES (413 past that)."""
    if request.content_type != "multipart/form-data":
        raise web.HTTPBadRequest(reason="expected a multipart/form-data upload")
    if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES + 65536:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_UPLOAD_BYTES, actual_size=request.content_length
        )
    fields: dict[str, str] = {}
    upload: tuple[str, bytes] | None = None
    total = 0
    try:
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest(reason="expected a flat form")
            data = bytearray()
            while chunk := await part.read_chunk():
                total += len(chunk)
                if total > MAX_UPLOAD_BYTES:
                    raise web.HTTPRequestEntityTooLarge(
                        max_size=MAX_UPLOAD_BYTES, actual_size=total
                    )
                data.extend(chunk)
            if part.name == "file" and part.filename:
                upload = (_file_name(part.filename), bytes(data))
            elif part.name:
                fields[part.name] = data.decode("utf-8", "replace")[:MAX_FIELD_CHARS]
    except (ValueError, AssertionError):  # a malformed body: the client's error
        raise web.HTTPBadRequest(reason="the upload is not valid multipart form data") from None
    refuse_unstorable(fields.values(), "the form")  # as read_form does for the other forms
    return fields, upload


def _file_name(name: str) -> str:
    """The upload's own name (never a path), for the messages and the rows' `file` column."""
    base = PurePath(name.replace("\\", "/")).name
    printable = "".join(ch for ch in base if ch.isprintable())
    return printable[-MAX_NAME:] or "upload.csv"


def routes() -> list[web.AbstractRouteDef]:
    return [web.get("/admin/costs", costs_page), web.post("/admin/costs", upload_costs)]
