"""Long-poll wake-ups: a waiter is woken by the bump itself (from any thread), never misses one, and
leaves nothing behind when it times out or is cancelled."""

from __future__ import annotations

import asyncio
import threading

from bastion.federation.server.epochs import Epochs


async def _until_waiting(epochs: Epochs, key: str, count: int = 1) -> None:
    async with asyncio.timeout(10):
        while epochs.waiting(key) < count:
            await asyncio.sleep(0)


def test_a_bump_from_another_thread_wakes_the_waiter() -> None:
    epochs = Epochs()

    async def scenario() -> tuple[bool, int]:
        seen = epochs.get("f")
        waiter = asyncio.create_task(epochs.wait("f", seen, timeout=60))
        await _until_waiting(epochs, "f")
        bumper = threading.Thread(target=epochs.bump, args=("f",))
        bumper.start()
        changed = await waiter  # woken by the bump, long before the 60 s timeout
        bumper.join()
        return changed, epochs.waiting("f")

    assert asyncio.run(scenario()) == (True, 0)
    assert epochs.get("f") == 1


def test_a_bump_between_reading_and_waiting_is_not_missed() -> None:
    epochs = Epochs()
    seen = epochs.get("f")
    epochs.bump("f")  # the round moved on after the caller read the epoch and its state
    assert asyncio.run(epochs.wait("f", seen, timeout=60)) is True
    assert epochs.waiting("f") == 0


def test_other_federations_do_not_wake_a_waiter_and_a_timeout_cleans_up() -> None:
    epochs = Epochs()

    async def scenario() -> bool:
        waiter = asyncio.create_task(epochs.wait("f", epochs.get("f"), timeout=0.05))
        await _until_waiting(epochs, "f")
        epochs.bump("other")
        return await waiter

    assert asyncio.run(scenario()) is False
    assert epochs.waiting("f") == 0 and epochs.get("f") == 0


def test_a_cancelled_long_poll_leaves_no_waiter() -> None:
    epochs = Epochs()

    async def scenario() -> None:
        waiter = asyncio.create_task(epochs.wait("f", 0, timeout=60))
        await _until_waiting(epochs, "f")
        waiter.cancel()  # the site hung up
        await asyncio.gather(waiter, return_exceptions=True)

    asyncio.run(scenario())
    assert epochs.waiting("f") == 0
    epochs.bump("f")  # nothing left to wake, nothing raised


def test_waiters_on_two_event_loops_are_each_woken_on_their_own_loop() -> None:
    epochs = Epochs()
    results: list[bool] = []

    def poll() -> None:
        results.append(asyncio.run(epochs.wait("f", 0, timeout=60)))

    threads = [threading.Thread(target=poll) for _ in range(2)]
    for t in threads:
        t.start()
    asyncio.run(_until_waiting(epochs, "f", 2))
    epochs.bump("f")
    for t in threads:
        t.join(30)
    assert results == [True, True] and epochs.waiting("f") == 0
