"""The official Python SDK client (`mcp.Client`) running the bridging matrix's operations against one
endpoint. Prints one JSON line per operation, as bridging/ts-client.mjs does.

    python bridging/py_client.py URL TOKEN legacy|modern

`legacy` opens a 2025-11-25 session (`initialize`; the SDK's handshake revision, it cannot be pinned
lower); `modern` probes `server/discover` at 2026-07-28 (`mode="auto"`, which falls back to
`initialize` when the probe fails: the `connect` line reports the revision the client ended up with,
and the matrix requires 2026-07-28). Elicitation is answered by the client's callback, in a session
(a standalone `elicitation/create`) and in 2026-07-28 (the SDK's `input_required` retry loop) alike.
The response cache is off, so every list reaches the endpoint.
"""

import asyncio
import json
import sys
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import ElicitResult

TIMEOUT_SECONDS = 10.0
ANSWER = {"username": "matrix-user", "email": "matrix-user@example.com"}


def dump(value: Any) -> Any:
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)


def failure(op: str, error: BaseException) -> dict[str, Any]:
    if isinstance(error, MCPError):
        return {"op": op, "error": {"code": error.code, "message": error.message}}
    # anyio task groups wrap the failure that matters.
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
        if isinstance(error, MCPError):
            return {"op": op, "error": {"code": error.code, "message": error.message}}
    return {"op": op, "error": {"code": None, "message": f"{type(error).__name__}: {error}"}}


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


async def main(url: str, token: str, era: str) -> None:
    elicitations = 0

    async def elicit(_context: Any, _params: Any) -> ElicitResult:
        nonlocal elicitations
        elicitations += 1
        return ElicitResult(action="accept", content=ANSWER)

    async def pages(client: Client) -> dict[str, Any]:
        seen: list[list[str]] = []
        cursor = None
        while True:
            page = await client.list_resources(cursor=cursor)
            seen.append([str(resource.uri) for resource in page.resources])
            cursor = page.next_cursor
            if cursor is None or len(seen) >= 10:
                return {"pages": seen, "more": cursor is not None}

    async def progress(client: Client) -> dict[str, Any]:
        reported: list[dict[str, Any]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            reported.append({"progress": value, "total": total, "message": message})

        result = await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
        return {"result": dump(result), "progress": reported}

    async def elicit_op(client: Client) -> dict[str, Any]:
        nonlocal elicitations
        elicitations = 0
        result = await client.call_tool("test_elicitation", {"message": "Who is calling?"})
        return {"result": dump(result), "elicitations": elicitations}

    operations = {
        "list": lambda c: _result(c.list_tools()),
        "call": lambda c: _result(c.call_tool("test_simple_text", {})),
        "progress": progress,
        "elicit": elicit_op,
        "read": lambda c: _result(c.read_resource("test://static-text")),
        "prompt": lambda c: _result(c.get_prompt("test_simple_prompt")),
        "pages": pages,
    }
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_SECONDS)
    client = Client(
        streamable_http_client(url, http_client=http),
        mode="legacy" if era == "legacy" else "auto",
        elicitation_callback=elicit,
        read_timeout_seconds=TIMEOUT_SECONDS,
        cache=None,
    )
    try:
        await asyncio.wait_for(client.__aenter__(), TIMEOUT_SECONDS)
    except BaseException as error:  # noqa: BLE001 - every failure is the outcome to report
        emit(failure("connect", error))
        return
    emit({"op": "connect", "result": {"protocolVersion": client.protocol_version}})
    try:
        for op, run in operations.items():
            try:
                emit({"op": op, **await asyncio.wait_for(run(client), TIMEOUT_SECONDS)})
            except BaseException as error:  # noqa: BLE001
                emit(failure(op, error))
    finally:
        try:
            await asyncio.wait_for(client.__aexit__(None, None, None), 5)
        except BaseException:  # noqa: BLE001 - closing is best effort
            pass


async def _result(awaitable: Any) -> dict[str, Any]:
    return {"result": dump(await awaitable)}


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
