"""The site runtime: join a federation, then take part in each round until it ends.

A site never sends data, only model parameters: sealed updates (:mod:`.plain`) or, when the
federation uses secure aggregation, masked inputs (:mod:`.secure`); the runtime picks the
participant per round, and neither participant knows the other. The site's own Ed25519 key is
generated at first start, kept 0600 in the state directory and registered with the server at first
contact. The server's signing key is pinned on first contact too, and every global model must carry
its signature, so a site never trains on weights or settings that did not come from its
coordinator. The state directory also records which rounds were sent, so a restarted site resumes
where it stopped. Every request goes through the SDK's :class:`~bastion.client.transport.Transport`;
network errors, 5xx, 423 and 429 are retried with exponential backoff (a ``retry`` event each).

Custom training loops subclass :class:`~bastion.client.site.base.SiteTrainer` (``fit``, optionally
``evaluate``); the default, :class:`bastion.client.site.trainer.TorchTrainer`, trains the
federation's model on local data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bastion.client.errors import BastionClientError
from bastion.client.site.base import Participant, SiteError, SiteEvent, SiteTrainer
from bastion.client.site.plain import PlainParticipant
from bastion.client.site.secure import SecureParticipant
from bastion.client.site.state import SiteState, default_state_dir, load_peer_keys
from bastion.client.transport import Retry, Transport
from bastion.crypto import signing
from bastion.errors import BastionError
from bastion.federation.global_model import GlobalModel, verify_global_model


def site_retry(give_up_after: float = 600.0) -> Retry:
    """A site rides out server restarts and overload: every 5xx, 423 and 429 too, for ten minutes."""
    return Retry(give_up_after=give_up_after, statuses=frozenset({423, 429}), server_errors=True)


class SiteClient:
    def __init__(
        self,
        server: str,
        federation_id: str,
        token: str,
        trainer: SiteTrainer,
        *,
        state_dir: Path | None = None,
        server_key: str | None = None,
        peer_keys: Mapping[str, str] | None = None,
        http: httpx.Client | None = None,
        verify: bool | str = True,
        poll_timeout: float = 20.0,
        retry: Retry | None = None,
        on_event: Callable[[SiteEvent], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.federation_id = federation_id
        self.trainer = trainer
        self.state = SiteState(state_dir or default_state_dir(federation_id, token))
        self.key = self.state.signing_key()
        if server_key is not None:
            signing.decode_public_key(server_key)
            self._pin(server_key)
        self.peer_keys = load_peer_keys(peer_keys) if peer_keys is not None else None
        self.poll_timeout = poll_timeout
        self.on_event = on_event or (lambda _e: None)
        # The site token is the only credential (a bearer token; "" keeps BASTION_API_KEY out). Long
        # polls last poll_timeout: the read timeout leaves them 30 s more.
        self.transport = Transport(
            server,
            "",
            timeout=poll_timeout + 30,
            verify=verify,
            http=http,
            retry=retry or site_retry(),
            on_retry=self._on_retry,
            sleep=sleep,
        )
        self.transport.access_token = token
        self._base = f"/api/v1/federations/{federation_id}/site"
        self.plain = PlainParticipant(self)
        self._secure: SecureParticipant | None = None

    def close(self) -> None:
        """Release the connection, also one passed in as ``http`` (each site has its own)."""
        self.transport.http.close()

    # -- plumbing ---------------------------------------------------------------------------------
    def emit(self, kind: str, round: int | None, message: str, **data: Any) -> None:
        self.on_event(SiteEvent(kind, round, message, data))

    def _on_retry(self, error: BastionClientError, wait: float) -> None:
        self.emit("retry", None, f"{error.message}; retrying in {wait:.1f} s", code=error.code)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to this federation's site endpoints, retried by the site's policy."""
        return self.transport.send(method, self._base + path, **kwargs)

    def _pin(self, key: str) -> None:
        pinned = self.state.data.get("server_signing_key")
        if pinned is None:
            self.state.data["server_signing_key"] = key
            self.state.save()
        elif pinned != key:
            raise SiteError(
                "the server's signing key differs from the one pinned at first contact; refusing to continue",
                code="server_key_changed",
            )

    # -- protocol ---------------------------------------------------------------------------------
    def join(self) -> dict[str, Any]:
        """Register this site's public key (idempotent) and pin the server's signing key."""
        body: dict[str, Any] = {"signing_public_key": signing.encode_public_key(self.key)}
        samples = self.trainer.train_samples()
        if samples is not None:
            body["num_samples"] = int(samples)
        info: dict[str, Any] = self.call("POST", "/register", json=body).json()
        self._pin(info["server_signing_key"])
        self.state.data.update(participant_id=info["participant_id"], federation_id=self.federation_id)
        self.state.save()
        self.emit("joined", info.get("round"), f"joined as {info.get('name')}", info=info)
        return info

    def info(self, wait_round: int | None = None, *, secagg: bool = False) -> dict[str, Any]:
        """Where the federation stands; ``wait_round`` long-polls while that round is current, and
        ``secagg`` asks for the open secure round's session view too (as ``secagg``)."""
        params: dict[str, Any] = (
            {"wait_round": wait_round, "timeout": self.poll_timeout} if wait_round is not None else {}
        )
        if secagg:
            params["secagg"] = "true"
        result: dict[str, Any] = self.call("GET", "/info", params=params or None).json()
        return result

    def run(self) -> dict[str, Any]:
        """Take part until the federation completes; returns its final state, raises SiteError on failure.

        The site gets ready (data loaded, model built) *before* it registers, because registering is
        what tells the coordinator it can start round 1's clock.
        """
        info = self.info()
        self._pin(info["server_signing_key"])
        if info["state"] in ("waiting", "running"):
            _number, _params, config = self.global_model()
            self.trainer.prepare(config)
        info = self.join()
        while True:
            if info["state"] == "completed":
                self.emit("completed", info["round"], "federation completed", info=info)
                return info
            if info["state"] == "failed":
                raise SiteError(
                    f"the federation failed: {info.get('failure_reason')}", code="federation_failed"
                )
            info = self.participant(info).advance(info)

    # -- participants -----------------------------------------------------------------------------
    @property
    def secure(self) -> SecureParticipant:
        """The secure-aggregation participant, built at the first secure round."""
        if self._secure is None:
            self._secure = SecureParticipant(self)
        return self._secure

    def participant(self, info: Mapping[str, Any]) -> Participant:
        """Secure aggregation or sealed updates, as the federation's ``/info`` says."""
        return self.secure if info.get("secure_aggregation") else self.plain

    def step(self, info: Mapping[str, Any]) -> str:
        """One non-blocking move in the current round (train and send, or one secure-aggregation stage)."""
        return self.participant(info).step(info)

    def train_and_send(self) -> str:
        """One sealed-update round (see :meth:`PlainParticipant.train_and_send`)."""
        return self.plain.train_and_send()

    def global_model(self) -> tuple[int, dict[str, np.ndarray], dict[str, Any]]:
        """The open round's model, verified against the pinned server key: (round, params, config)."""
        model = GlobalModel.from_bytes(self.call("GET", "/model").content)
        pinned = self.state.data.get("server_signing_key")
        if pinned is None:
            raise SiteError("no server signing key is pinned yet: join first", code="not_joined")
        params = dict(
            verify_global_model(signing.decode_public_key(pinned), model, federation_id=self.federation_id)
        )
        return model.round, params, {**model.config, "round": model.round}


def run_site(client: SiteClient) -> dict[str, Any]:
    """Run and always release the HTTP connection; library errors surface as :class:`SiteError`."""
    try:
        return client.run()
    except BastionError as exc:
        raise SiteError(exc.message, code=exc.code) from exc
    finally:
        client.close()
