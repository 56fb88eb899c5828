"""A dishonest server or a network attacker is caught: swapped keys, altered shares, replays, and
unmasking requests that would expose one client's input."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bastion.errors import BadRequest, Conflict, CryptoError, Invalid
from bastion.federation.secagg import (
    ClientStage,
    KeysBroadcast,
    MaskedInput,
    RoundAborted,
    SecAggClient,
    SecAggServer,
    SharesDelivery,
    UnmaskRequest,
)
from bastion.federation.secagg.keys import sign_advert
from tests.federation.secagg.support import Setup


def _raw(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class Round:
    """Clients and an honest server, stepped by hand so a test can tamper between stages."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.directory = {c: k.public_key() for c, k in setup.identities.items()}
        self.server = SecAggServer(setup.config, self.directory)
        self.clients = {
            c: SecAggClient(setup.config, c, setup.identities[c], self.directory)
            for c in setup.config.participants
        }

    def advertise(self) -> dict[int, KeysBroadcast]:
        for c in self.clients.values():
            self.server.receive_advertise(c.advertise_keys())
        return self.server.close_advertise()

    def share(self) -> dict[int, SharesDelivery]:
        broadcasts = self.advertise()
        for cid, c in self.clients.items():
            self.server.receive_shares(c.share_keys(broadcasts[cid]))
        return self.server.close_shares()

    def mask(self) -> UnmaskRequest:
        deliveries = self.share()
        for cid, c in self.clients.items():
            self.server.receive_masked_input(c.masked_input(deliveries[cid], self.setup.updates[cid]))
        return self.server.close_masked_input()


def _substitute(
    broadcast: KeysBroadcast, victim: int, *, enc: bytes | None = None, mask: bytes | None = None
) -> KeysBroadcast:
    keys = []
    for advert in broadcast.keys:
        if advert.client_id == victim:
            advert = advert.model_copy(
                update={
                    "enc_public_key": enc or advert.enc_public_key,
                    "mask_public_key": mask or advert.mask_public_key,
                }
            )
        keys.append(advert)
    return broadcast.model_copy(update={"keys": keys})


def test_substituted_mask_key_is_detected(make_setup: Callable[..., Setup]) -> None:
    rnd = Round(make_setup(n=5, threshold=3))
    broadcasts = rnd.advertise()
    attacker = X25519PrivateKey.generate()
    forged = _substitute(broadcasts[1], victim=3, mask=_raw(attacker))
    with pytest.raises(CryptoError, match="client 3 are not signed by its identity"):
        rnd.clients[1].share_keys(forged)
    assert rnd.clients[1].stage is ClientStage.ABORTED


def test_substituted_encryption_key_is_detected(make_setup: Callable[..., Setup]) -> None:
    """A swapped encryption key would let the server read the shares it relays."""
    rnd = Round(make_setup(n=5, threshold=3))
    broadcasts = rnd.advertise()
    forged = _substitute(broadcasts[2], victim=4, enc=_raw(X25519PrivateKey.generate()))
    with pytest.raises(CryptoError, match="possible key substitution"):
        rnd.clients[2].share_keys(forged)


def test_keys_re_signed_by_another_identity_are_detected(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=5, threshold=3)
    rnd = Round(setup)
    broadcasts = rnd.advertise()
    mallory = Ed25519PrivateKey.generate()
    fake = sign_advert(
        mallory,
        setup.config.round_id,
        3,
        _raw(X25519PrivateKey.generate()),
        _raw(X25519PrivateKey.generate()),
    )
    keys = [fake if a.client_id == 3 else a for a in broadcasts[1].keys]
    with pytest.raises(CryptoError):
        rnd.clients[1].share_keys(broadcasts[1].model_copy(update={"keys": keys}))


def test_keys_replayed_from_another_round_are_detected(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=5, threshold=3)
    old = make_setup(n=5, threshold=3, round_id="fed-1.round-0")
    old_advert = SecAggClient(old.config, 3, setup.identities[3], {}).advertise_keys()
    rnd = Round(setup)
    broadcasts = rnd.advertise()
    replayed = old_advert.model_copy(update={"round_id": setup.config.round_id})
    keys = [replayed if a.client_id == 3 else a for a in broadcasts[1].keys]
    with pytest.raises(CryptoError):
        rnd.clients[1].share_keys(broadcasts[1].model_copy(update={"keys": keys}))


def test_server_with_directory_refuses_forged_adverts(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=5, threshold=3)
    rnd = Round(setup)
    advert = rnd.clients[2].advertise_keys()
    forged = advert.model_copy(update={"mask_public_key": _raw(X25519PrivateKey.generate())})
    with pytest.raises(CryptoError):
        rnd.server.receive_advertise(forged)


def test_server_cannot_drop_a_clients_own_keys(make_setup: Callable[..., Setup]) -> None:
    rnd = Round(make_setup(n=5, threshold=3))
    broadcasts = rnd.advertise()
    keys = [a for a in broadcasts[1].keys if a.client_id != 1]
    with pytest.raises(RoundAborted, match="did not relay our own keys"):
        rnd.clients[1].share_keys(broadcasts[1].model_copy(update={"keys": keys}))


def test_altered_encrypted_share_is_detected(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=5, threshold=3)
    rnd = Round(setup)
    deliveries = rnd.share()
    blob = bytearray(deliveries[1].encrypted_shares[2])
    blob[-1] ^= 1
    shares = dict(deliveries[1].encrypted_shares) | {2: bytes(blob)}
    with pytest.raises(CryptoError, match="shares from client 2 failed authentication"):
        rnd.clients[1].masked_input(
            deliveries[1].model_copy(update={"encrypted_shares": shares}), setup.updates[1]
        )


def test_share_redirected_to_another_client_is_detected(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=5, threshold=3)
    rnd = Round(setup)
    deliveries = rnd.share()
    shares = dict(deliveries[1].encrypted_shares) | {2: deliveries[3].encrypted_shares[2]}
    with pytest.raises(CryptoError):
        rnd.clients[1].masked_input(
            deliveries[1].model_copy(update={"encrypted_shares": shares}), setup.updates[1]
        )


def test_client_refuses_to_reveal_both_secrets_of_one_peer(make_setup: Callable[..., Setup]) -> None:
    """Listing a client as both survivor and dropout would give the server its seed and its mask key."""
    rnd = Round(make_setup(n=5, threshold=3))
    request = rnd.mask()
    evil = request.model_copy(update={"dropped": [3]})
    with pytest.raises(RoundAborted, match="both surviving and dropped"):
        rnd.clients[1].unmask(evil)


def test_client_answers_only_one_unmask_request(make_setup: Callable[..., Setup]) -> None:
    rnd = Round(make_setup(n=5, threshold=3))
    request = rnd.mask()
    rnd.clients[1].unmask(request)
    second = UnmaskRequest(round_id=request.round_id, survivors=[1, 2, 4, 5], dropped=[3])
    with pytest.raises(Conflict):
        rnd.clients[1].unmask(second)


def test_client_refuses_unmask_with_too_few_survivors(make_setup: Callable[..., Setup]) -> None:
    rnd = Round(make_setup(n=5, threshold=3))
    request = rnd.mask()
    with pytest.raises(RoundAborted, match="threshold is 3"):
        rnd.clients[1].unmask(request.model_copy(update={"survivors": [1, 2], "dropped": [3, 4, 5]}))


def test_messages_of_another_round_are_refused(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=5, threshold=3)
    rnd = Round(setup)
    broadcasts = rnd.advertise()
    with pytest.raises(BadRequest):
        rnd.clients[1].share_keys(broadcasts[1].model_copy(update={"round_id": "other"}))
    with pytest.raises(BadRequest):
        rnd.clients[1].share_keys(broadcasts[2])


def test_server_refuses_malformed_and_duplicate_inputs(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=5, threshold=3)
    rnd = Round(setup)
    deliveries = rnd.share()
    msg = rnd.clients[1].masked_input(deliveries[1], setup.updates[1])
    with pytest.raises(Invalid, match="wrong length"):
        rnd.server.receive_masked_input(msg.model_copy(update={"masked_vector": msg.masked_vector[:-4]}))
    rnd.server.receive_masked_input(msg)
    with pytest.raises(Conflict):
        rnd.server.receive_masked_input(msg)
    with pytest.raises(Invalid, match=r"not a participant|did not share"):
        rnd.server.receive_masked_input(MaskedInput(round_id=msg.round_id, client_id=99, masked_vector=b""))


def test_stages_run_in_order(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=5, threshold=3)
    rnd = Round(setup)
    with pytest.raises(Conflict):
        rnd.server.close_shares()
    client = rnd.clients[1]
    with pytest.raises(Conflict):
        client.unmask(UnmaskRequest(round_id=setup.config.round_id, survivors=[1, 2, 3], dropped=[]))
