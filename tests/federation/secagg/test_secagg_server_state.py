"""What the server holds: signed public keys, one running masked sum, then the unmasked sum. Never an
individual update, masked or not."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from bastion.federation.secagg import SecAggClient, SecAggServer
from tests.federation.secagg.support import Setup


def _walk(obj: Any, seen: set[int] | None = None) -> Iterator[Any]:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(k, seen)
            yield from _walk(v, seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            yield from _walk(v, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        yield from _walk(vars(obj), seen)


def _assert_no_individual_update(server: SecAggServer, setup: Setup, contributors: list[int]) -> None:
    q = setup.config.quantizer
    encoded = {c: q.encode(setup.updates[c]) for c in setup.config.participants}
    arrays = [o for o in _walk(server) if isinstance(o, np.ndarray)]
    blobs = [o for o in _walk(server) if isinstance(o, bytes)]
    vectors = [a for a in arrays if a.size == setup.config.vector_length]
    assert len(vectors) <= 1, "the server keeps more than one vector"
    for vec in vectors:
        for c in setup.config.participants:
            assert not np.array_equal(vec, encoded[c])
            assert not np.allclose(q.decode_sum(vec, 1), setup.updates[c], atol=1e-3)
    for blob in blobs:
        for c in setup.config.participants:
            assert encoded[c].tobytes() not in blob
            assert setup.updates[c].tobytes() not in blob
    for name in vars(server):
        assert "update" not in name and "input" not in name.replace("masked", "")
    assert contributors


def test_server_state_never_holds_an_individual_update(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=6, threshold=4, d=32)
    directory = {c: k.public_key() for c, k in setup.identities.items()}
    server = SecAggServer(setup.config, directory)
    clients = {
        c: SecAggClient(setup.config, c, setup.identities[c], directory) for c in setup.config.participants
    }
    for c in clients.values():
        server.receive_advertise(c.advertise_keys())
    broadcasts = server.close_advertise()
    for cid, c in clients.items():
        server.receive_shares(c.share_keys(broadcasts[cid]))
    deliveries = server.close_shares()
    sent: list[int] = []
    for cid, c in clients.items():
        if cid == 6:
            continue  # drops before its masked input
        server.receive_masked_input(c.masked_input(deliveries[cid], setup.updates[cid]))
        sent.append(cid)
        # After every single arrival, including the first, the state holds only the masked running sum.
        _assert_no_individual_update(server, setup, sent)
    request = server.close_masked_input()
    for cid in request.survivors:
        server.receive_unmask(clients[cid].unmask(request))
        _assert_no_individual_update(server, setup, sent)
    result = server.finalize()
    _assert_no_individual_update(server, setup, sent)
    assert np.max(np.abs(result.total - setup.plain_sum(sent))) <= result.max_error + 1e-9
    # Secrets rebuilt for unmasking are gone once the round is done.
    assert server._seed_shares == {} and server._key_shares == {} and server._masked_sum is None


def test_first_masked_input_alone_reveals_nothing(make_setup: Callable[..., Setup]) -> None:
    """A masked vector is indistinguishable from uniform words: decoding it gives nothing like the update."""
    setup = make_setup(n=4, threshold=3, d=2000)
    directory = {c: k.public_key() for c, k in setup.identities.items()}
    server = SecAggServer(setup.config, directory)
    clients = {
        c: SecAggClient(setup.config, c, setup.identities[c], directory) for c in setup.config.participants
    }
    for c in clients.values():
        server.receive_advertise(c.advertise_keys())
    b = server.close_advertise()
    for cid, c in clients.items():
        server.receive_shares(c.share_keys(b[cid]))
    dl = server.close_shares()
    msg = clients[1].masked_input(dl[1], setup.updates[1])
    words = np.frombuffer(msg.masked_vector, dtype="<u4").astype(np.float64) / 2**32
    assert abs(float(np.corrcoef(words, setup.updates[1])[0, 1])) < 0.15
    assert abs(float(words.mean()) - 0.5) < 0.05
