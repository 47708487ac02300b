"""A service with known timing, for testing load generators against a real uvicorn process.

Requests are served one at a time (an asyncio lock), like a single-threaded model
server: `/work` takes 2 ms; `/stall` takes 2 ms except the 50th request, which holds
the lock for 300 ms (a pause that queues everything behind it); `/status/{code}`
answers that code; `/hang` never answers within a test's timeout.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.responses import JSONResponse


def app() -> FastAPI:
    service = FastAPI()
    lock = asyncio.Lock()
    count = [0]

    async def busy(seconds: float) -> None:
        async with lock:  # one request at a time: the others queue, as behind a single-threaded model
            await asyncio.sleep(seconds)

    @service.get("/readyz")
    async def readyz() -> dict:
        return {"ready": True}

    @service.post("/work")
    async def work() -> dict:
        await busy(0.002)
        return {"ok": True}

    @service.post("/stall")
    async def stall() -> dict:
        count[0] += 1
        await busy(0.3 if count[0] % 100 == 50 else 0.002)
        return {"ok": True}

    @service.post("/status/{code}")
    async def status(code: int) -> JSONResponse:
        return JSONResponse({"code": code}, status_code=code)

    @service.post("/hang")
    async def hang() -> dict:
        await asyncio.sleep(30)
        return {"ok": True}

    return service
