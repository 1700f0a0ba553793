"""`within`: a timeout that never swallows a cancel (asyncio.wait_for on Python 3.11 does)."""

from __future__ import annotations

import asyncio

import pytest

from fnplane.shared.loop import within


async def _loop_waiting_on(event: asyncio.Event) -> None:
    """The shape of every background loop here: wait for a wake or the period, then work."""
    while True:
        try:
            await within(event.wait(), 10.0)
        except TimeoutError:
            pass
        event.clear()


async def test_a_cancel_that_arrives_as_the_wake_fires_ends_the_loop() -> None:
    event = asyncio.Event()
    loop = asyncio.create_task(_loop_waiting_on(event))
    await asyncio.sleep(0)
    event.set()
    # the wait has finished but the loop has not resumed yet: the window wait_for drops a cancel in
    await asyncio.sleep(0)
    loop.cancel()
    done, _ = await asyncio.wait({loop}, timeout=2.0)
    assert done == {loop} and loop.cancelled()


async def test_it_returns_the_result_or_raises_timeout() -> None:
    assert await within(asyncio.sleep(0, "answer"), 1.0) == "answer"
    with pytest.raises(TimeoutError):
        await within(asyncio.sleep(5), 0.01)
    assert await within(asyncio.sleep(0, "no limit"), None) == "no limit"
