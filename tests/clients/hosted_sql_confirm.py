"""The official Python SDK client (`mcp.Client`) calling one destructive hosted SQL tool whose
confirmation Gatehouse asks for: through `elicitation/create` in a 2025-11-25 session (`legacy`),
or an `input_required` result the SDK answers and retries in 2026-07-28 (`modern`). The client's
elicitation callback answers `accept` (with `{"confirm": true}`) or `decline`. Prints one JSON line:
{"protocolVersion": …, "elicitations": [params…], "result": …} or {"error": {…}}.

    python hosted_sql_confirm.py URL TOKEN legacy|modern TOOL ARGUMENTS_JSON accept|decline
"""

import asyncio
import json
import sys
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitResult

TIMEOUT_SECONDS = 20.0


async def main(url: str, token: str, era: str, tool: str, arguments: str, answer: str) -> None:
    asked: list[Any] = []

    async def elicit(_context: Any, params: Any) -> ElicitResult:
        asked.append(params.model_dump(mode="json", by_alias=True, exclude_none=True))
        if answer == "accept":
            return ElicitResult(action="accept", content={"confirm": True})
        return ElicitResult(action="decline")

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_SECONDS)
    client = Client(
        streamable_http_client(url, http_client=http),
        mode="legacy" if era == "legacy" else "auto",
        elicitation_callback=elicit,
        read_timeout_seconds=TIMEOUT_SECONDS,
        cache=None,
    )
    try:
        async with client:
            result = await asyncio.wait_for(client.call_tool(tool, json.loads(arguments)), TIMEOUT_SECONDS)
            print(
                json.dumps(
                    {
                        "protocolVersion": client.protocol_version,
                        "elicitations": asked,
                        "result": result.model_dump(mode="json", by_alias=True, exclude_none=True),
                    }
                ),
                flush=True,
            )
    except BaseException as error:  # noqa: BLE001 - the failure is the outcome to report
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        print(json.dumps({"error": {"message": f"{type(error).__name__}: {error}"}}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
