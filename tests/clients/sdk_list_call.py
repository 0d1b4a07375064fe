"""The official Python SDK client against a Gatehouse endpoint with a bearer token: open the
connection in one era (`legacy`: initialize + session; `modern`: server/discover, 2026-07-28),
list tools, call one. Prints one JSON line with what it saw.

    python sdk_list_call.py URL TOKEN TOOL legacy|modern
"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, token: str, tool: str, era: str) -> None:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                if era == "modern":
                    opened = await session.discover()
                    versions = list(opened.supported_versions)
                else:
                    opened = await session.initialize()
                    versions = [opened.protocol_version]
                tools = await session.list_tools()
                result = await session.call_tool(tool, {})
                print(
                    json.dumps(
                        {
                            "era": era,
                            "versions": versions,
                            "tools": [t.name for t in tools.tools],
                            "result": result.model_dump(mode="json", by_alias=True, exclude_none=True),
                        }
                    )
                )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
