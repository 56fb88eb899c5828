"""The verified-key cache: fast, but revocation, disabling, expiry and lockout still hold.

In this process a change takes effect at once; a change the process cannot see (another replica,
raw SQL) within the documented window, ``API_KEY_CACHE_TTL`` seconds. SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import anyio
import pytest
from sqlalchemy import create_engine, event, select, text, update

from bastion import clock as wall_clock
from bastion.auth import apikeys
from bastion.auth.cache import API_KEY_CACHE_TTL, PrincipalCache
from bastion.auth.principal import Principal
from bastion.auth.service import AuthService
from bastion.context import Context
from bastion.errors import Locked, Unauthorized
from bastion.store.base import utcnow
from bastion.store.tables import ApiKey, AuditEvent, User
from tests.conftest import Caller

IP = "203.0.113.7"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auth(ctx: Context, clock: FakeClock) -> AuthService:
    """An AuthService over the test database whose cache runs on a clock the test moves."""
    a = ctx.auth
    return AuthService(ctx.db, a.tokens, a.audit, a.lockout, cache=PrincipalCache(clock=clock))


@pytest.fixture
def key_reads(ctx: Context) -> Iterator[list[str]]:
    """Every statement that reads the api_keys table, as the database receives it."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
            seen.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(ctx.db.engine, "before_cursor_execute", record)


def _code(fn: Callable[[], object]) -> str:
    with pytest.raises(Unauthorized) as err:
        fn()
    return str(err.value.code)


def test_a_verified_key_is_served_from_memory_within_the_window(
    auth: AuthService, alice: Caller, key_reads: list[str], clock: FakeClock
) -> None:
    first = auth.authenticate(alice.key, IP)
    assert (first.username, first.via) == ("alice", "api_key")
    assert len(key_reads) == 1
    assert auth.authenticate(alice.key, IP) == first
    assert len(key_reads) == 1, "a second call within the window must not touch the database"
    clock.advance(API_KEY_CACHE_TTL)
    assert auth.authenticate(alice.key, IP) == first
    assert len(key_reads) == 2, "past the window the key is checked against the database again"


def test_revoking_in_process_takes_effect_at_once(ctx: Context, auth: AuthService, alice: Caller) -> None:
    new = ctx.accounts.create_key(alice.user_id, "laptop")
    auth.authenticate(new.plaintext, IP)
    ctx.accounts.revoke_key(new.key.id, owner_id=alice.user_id)
    assert _code(lambda: auth.authenticate(new.plaintext, IP)) == "api_key_revoked"
    assert auth.authenticate(alice.key, IP).username == "alice", "other keys stay valid"


def test_disabling_and_role_changes_take_effect_at_once(
    ctx: Context, auth: AuthService, alice: Caller
) -> None:
    assert auth.authenticate(alice.key, IP).role == "user"
    ctx.accounts.update_user(alice.user_id, role="viewer")
    assert auth.authenticate(alice.key, IP).role == "viewer"
    ctx.accounts.update_user(alice.user_id, disabled=True)
    assert _code(lambda: auth.authenticate(alice.key, IP)) == "account_disabled"


def test_any_orm_change_to_the_key_row_invalidates(ctx: Context, auth: AuthService, alice: Caller) -> None:
    auth.authenticate(alice.key, IP)
    with ctx.db.session() as s:
        key = s.query(ApiKey).filter_by(key_hash=apikeys.digest(alice.key)).one()
        key.expires_at = utcnow() - timedelta(seconds=1)
    assert _code(lambda: auth.authenticate(alice.key, IP)) == "api_key_expired"


def test_bulk_updates_of_users_clear_the_cache(ctx: Context, auth: AuthService, alice: Caller) -> None:
    auth.authenticate(alice.key, IP)
    with ctx.db.session() as s:
        s.execute(update(User).where(User.id == alice.user_id).values(disabled=True))
    assert _code(lambda: auth.authenticate(alice.key, IP)) == "account_disabled"


def test_a_key_expiring_while_cached_stops_at_its_expiry(
    ctx: Context, auth: AuthService, alice: Caller
) -> None:
    new = ctx.accounts.create_key(alice.user_id, "short", expires_in_days=1)
    auth.authenticate(new.plaintext, IP)
    with wall_clock.use(wall_clock.ManualClock(utcnow() + timedelta(days=1, seconds=1))):
        assert _code(lambda: auth.authenticate(new.plaintext, IP)) == "api_key_expired"


def test_revocation_out_of_process_is_honoured_within_the_window(
    ctx: Context, auth: AuthService, alice: Caller, clock: FakeClock
) -> None:
    """A revocation this process cannot see (another replica, the CLI) bites within the ttl."""
    auth.authenticate(alice.key, IP)
    other = create_engine(ctx.db.url)  # a separate engine: no session events of ours see this
    with other.begin() as conn:
        conn.execute(text("UPDATE api_keys SET revoked_at = :t"), {"t": utcnow()})
    other.dispose()
    assert auth.authenticate(alice.key, IP).username == "alice"  # inside the documented window
    clock.advance(API_KEY_CACHE_TTL)
    assert _code(lambda: auth.authenticate(alice.key, IP)) == "api_key_revoked"


def test_failures_are_never_cached_and_lock_the_address_for_guesses_at_once(
    ctx: Context, auth: AuthService, alice: Caller, key_reads: list[str]
) -> None:
    auth.authenticate(alice.key, IP)
    wrong = apikeys.generate()
    for _ in range(ctx.settings.max_failed_attempts):
        assert _code(lambda: auth.authenticate(wrong, IP)) == "invalid_api_key"
    assert len(key_reads) == 1 + ctx.settings.max_failed_attempts, "every failure reaches the database"
    with pytest.raises(Locked):
        auth.authenticate(apikeys.generate(), IP)
    assert auth.authenticate(alice.key, IP).username == "alice", (
        "a valid key is never refused for its address"
    )


def test_concurrent_misses_share_one_lookup(auth: AuthService, alice: Caller, key_reads: list[str]) -> None:
    results: list[Principal] = []

    async def main() -> None:
        async def one() -> None:
            results.append(await auth.authenticate_async(alice.key, IP))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)

    anyio.run(main)
    assert len(results) == 20 and {p.username for p in results} == {"alice"}
    assert len(key_reads) == 1


def test_an_ageing_entry_is_refreshed_ahead_and_a_revocation_found(
    ctx: Context, auth: AuthService, alice: Caller, key_reads: list[str], clock: FakeClock
) -> None:
    async def call() -> Principal:
        return await auth.authenticate_async(alice.key, IP)

    anyio.run(call)
    anyio.run(call)
    assert len(key_reads) == 1
    clock.advance(auth.cache.refresh_after)
    anyio.run(call)  # still served, but this caller re-reads the row
    assert len(key_reads) == 2
    other = create_engine(ctx.db.url)
    with other.begin() as conn:
        conn.execute(text("UPDATE api_keys SET revoked_at = :t"), {"t": utcnow()})
    other.dispose()
    clock.advance(auth.cache.refresh_after)
    with pytest.raises(Unauthorized):
        anyio.run(call)


def test_concurrent_bad_keys_are_each_counted(ctx: Context, auth: AuthService, key_reads: list[str]) -> None:
    """Sharing a lookup must not merge failures: each bad request counts towards the lockout."""
    wrong = apikeys.generate()
    attempts = ctx.settings.max_failed_attempts
    outcomes: list[str] = []

    async def main() -> None:
        async def attempt() -> None:
            try:
                await auth.authenticate_async(wrong, IP)
            except (Unauthorized, Locked) as exc:
                outcomes.append(type(exc).__name__)

        async with anyio.create_task_group() as tg:
            for _ in range(attempts):
                tg.start_soon(attempt)

    anyio.run(main)
    assert outcomes == ["Unauthorized"] * attempts
    assert len(key_reads) == attempts
    with ctx.db.session() as s:
        denied = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.denied")).all()
    assert len(denied) == attempts, "each failure is audited on its own"


# -- the cache on its own ---------------------------------------------------------------------------

P = Principal("u1", "alice", "user", "api_key", key_id="k1")


def test_an_invalidation_during_a_lookup_keeps_its_result_out(clock: FakeClock) -> None:
    cache = PrincipalCache(clock=clock)
    ticket = cache.ticket()  # a lookup starts, reads the row (not yet revoked) ...
    cache.invalidate(key_ids=["k1"])  # ... the revocation commits ...
    cache.put("d", P, None, "ip:x", ticket)  # ... and the lookup tries to remember what it read
    assert cache.get("d", "ip:x", utcnow()) is None


def test_entries_age_from_the_start_of_their_read(clock: FakeClock) -> None:
    cache = PrincipalCache(ttl=2.0, clock=clock)
    ticket = cache.ticket()
    clock.advance(1.5)  # a slow read
    cache.put("d", P, None, "ip:x", ticket)
    assert cache.lookup("d", "ip:x", utcnow()) == (P, True)
    clock.advance(0.5)
    assert cache.lookup("d", "ip:x", utcnow()) == (None, True)


def test_a_forgotten_source_needs_a_fresh_check(clock: FakeClock) -> None:
    cache = PrincipalCache(clock=clock)
    cache.put("d", P, None, "ip:x", cache.ticket())
    assert cache.lookup("d", "ip:x", utcnow()) == (P, False)
    assert cache.get("d", "ip:y", utcnow()) is None, "a source never checked is not trusted"
    cache.forget_source("ip:x")
    assert cache.get("d", "ip:x", utcnow()) is None


def test_invalidation_by_user_and_size_bound(clock: FakeClock) -> None:
    cache = PrincipalCache(max_entries=8, clock=clock)
    for i in range(20):
        cache.put(
            f"d{i}", Principal(f"u{i}", "n", "user", "api_key", key_id=f"k{i}"), None, "ip:x", cache.ticket()
        )
    assert len(cache._keys) <= 8
    cache.put("mine", P, None, "ip:x", cache.ticket())
    cache.invalidate(user_ids=["u1"])
    assert cache.get("mine", "ip:x", utcnow()) is None


def test_a_zero_ttl_disables_the_cache(clock: FakeClock) -> None:
    cache = PrincipalCache(ttl=0, clock=clock)
    cache.put("d", P, None, "ip:x", cache.ticket())
    assert not cache.enabled and cache.get("d", "ip:x", utcnow()) is None
