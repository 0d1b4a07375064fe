"""An MCP server on the official Python SDK, for the bridging matrix
(tests/e2e/dataplane/bridging_matrix.rs): `mcp` 2.x's `MCPServer` (the class that was `FastMCP`
before mcp 2) served over Streamable HTTP at /mcp with its defaults (`streamable_http_app()`:
sessions for the initialize revisions, per-request 2026-07-28 requests served statelessly).
Prints `listening <port>`.

    python bridging/py_server.py

It serves the catalog of bridging/catalog.mjs (the fixture's names and payloads). `MCPServer`
lists everything in one page and has no page-size option, so a middleware (the SDK's
`ServerMiddleware` seam) pages `resources/list` one resource per page with its own cursor.
Elicitation uses the SDK's resolver (`Resolve` + `Elicit`), which asks with a standalone
`elicitation/create` request in a session and with an `input_required` result (MRTR) in
2026-07-28, as the SDK chooses.
"""

import asyncio
import base64
import socket
from typing import Annotated, Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.server.elicitation import ElicitationResult
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, Field

PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
PAGE_SIZE = 1
INVALID_PARAMS = -32602


async def page_resources(ctx: Any, call_next: Any) -> Any:
    """Serves `resources/list` in pages of `PAGE_SIZE` with a `page-<index>` cursor."""
    if ctx.method != "resources/list":
        return await call_next(ctx)
    cursor = (ctx.params or {}).get("cursor")
    params = {key: value for key, value in (ctx.params or {}).items() if key != "cursor"}
    from dataclasses import replace

    listed = await call_next(replace(ctx, params=params))
    result = listed if isinstance(listed, dict) else listed.model_dump(by_alias=True, mode="json", exclude_none=True)
    resources = result.get("resources", [])
    start = 0
    if cursor is not None:
        if not str(cursor).startswith("page-") or not str(cursor)[5:].isdigit():
            raise MCPError(code=INVALID_PARAMS, message=f"unknown cursor {cursor}")
        start = int(str(cursor)[5:])
        if start > len(resources):
            raise MCPError(code=INVALID_PARAMS, message=f"unknown cursor {cursor}")
    end = min(start + PAGE_SIZE, len(resources))
    page = dict(result, resources=resources[start:end])
    page.pop("nextCursor", None)
    if end < len(resources):
        page["nextCursor"] = f"page-{end}"
    return page


mcp = MCPServer("matrix-python", version="1.0.0", middleware=[page_resources])


@mcp.tool(description="Tests simple text content response")
def test_simple_text() -> str:
    return "This is a simple text response for testing."


@mcp.tool(description="Tests tool that reports progress notifications")
async def test_tool_with_progress(ctx: Context) -> str:
    for index, progress in enumerate([0, 50, 100]):
        if index > 0:
            await asyncio.sleep(0.05)
        await ctx.report_progress(progress, 100, f"Completed step {progress} of 100")
    return "Progress reported to the caller's token"


class UserInfo(BaseModel):
    username: str = Field(description="User's response")
    email: str = Field(description="User's email address")


def ask_user(message: str) -> Elicit[UserInfo]:
    return Elicit(message, UserInfo)


@mcp.tool(description="Tests elicitation: asks the user for information")
def test_elicitation(message: str, answer: Annotated[ElicitationResult[UserInfo], Resolve(ask_user)]) -> str:
    content = answer.data.model_dump() if answer.action == "accept" else {}
    import json

    return f"User response: action={answer.action}, content={json.dumps(content, separators=(',', ':'))}"


@mcp.resource("test://static-text", name="static-text", title="Static Text Resource", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@mcp.resource("test://static-binary", name="static-binary", title="Static Binary Resource", mime_type="image/png")
def static_binary() -> bytes:
    return PNG_1X1


@mcp.resource("test://watched-resource", name="watched-resource", title="Watched Resource", mime_type="text/plain")
def watched() -> str:
    return "Watched resource content"


@mcp.prompt(description="A simple prompt without arguments")
def test_simple_prompt() -> str:
    return "This is a simple prompt for testing."


async def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(mcp.streamable_http_app(), log_level="warning")
    server = uvicorn.Server(config)
    print(f"listening {sock.getsockname()[1]}", flush=True)
    await server.serve(sockets=[sock])


if __name__ == "__main__":
    asyncio.run(main())
