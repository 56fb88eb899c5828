"""A site's part in secure-aggregation rounds: train, privatize, then run the SecAgg+ stages over HTTP.

Per round the site trains once and keeps, in memory only, its delta from the global model, clipped to
the federation's L2 bound and (distributed DP) with its share of the Gaussian noise already added.
It then joins the round's session and answers each stage as the server reaches it. Before using
anything the server relays it checks it: the session belongs to this federation and round, the
threshold is a majority of the neighbourhood (the library refuses less), and every peer's identity
key is the one pinned the first time this site saw that peer (trust on first use, like the server's
own key), so a server that substitutes a key is caught here as well as by the signatures.

A site's masked input goes into at most one session per round (recorded on disk before it is sent):
if that session is aborted, the site sits the round out rather than let a server unmask a second,
different subset and subtract the two sums.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from bastion.client.errors import BastionClientError
from bastion.client.site.base import PROGRESS, WAIT_ROUND, WAIT_STAGE, Site
from bastion.crypto import signing
from bastion.errors import BastionError
from bastion.federation.secagg import (
    ClientStage,
    KeysBroadcast,
    SecAggClient,
    SecAggConfig,
    SharesDelivery,
    UnmaskRequest,
)
from bastion.federation.secagg.vector import flatten
from bastion.privacy import privatize_update

if TYPE_CHECKING:
    from pydantic import BaseModel

STALE = ("secagg_stale_session", "secagg_wrong_stage", "secagg_round_aborted", "round_closed")


def privatize(
    params: Mapping[str, np.ndarray], global_params: Mapping[str, np.ndarray], privacy: Mapping[str, Any]
) -> np.ndarray:
    """The flat delta a site contributes: clipped to S and noised when the federation uses DP."""
    delta = flatten(params)[0] - flatten(global_params)[0]
    dp = privacy.get("dp")
    if dp:
        delta = privatize_update(delta, float(dp["clip_norm"]), float(dp.get("site_noise_std") or 0.0))
    result: np.ndarray = delta
    return result


class SecureParticipant:
    """The site side of every secure round of one federation; :meth:`step` never blocks on the server."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._round: int | None = None
        self._vector: np.ndarray | None = None
        self._client: SecAggClient | None = None
        self._session: str | None = None
        self._refused: set[str] = set()
        self._value_range = 0.0
        self._fit_seconds = 0.0
        self.last_view: dict[str, Any] = {}
        self.carried: dict[str, Any] | None = None  # the view the last stage answer carried, if any

    # -- the server's session view ---------------------------------------------------------------
    def secagg_state(self, wait_session: str | None = None, wait_stage: str | None = None) -> dict[str, Any]:
        """The round's session as this site may see it; with ``wait_stage``, long-poll until it moves on."""
        params: dict[str, Any] | None = None
        if wait_stage is not None:
            params = {"wait_stage": wait_stage, "timeout": self.site.poll_timeout}
            if wait_session is not None:
                params["wait_session"] = wait_session
        result: dict[str, Any] = self.site.call("GET", "/secagg", params=params).json()
        return result

    def send(self, kind: str, message: BaseModel, *, wait: bool = False) -> dict[str, Any]:
        """Post a stage's message; with ``wait`` the server long-polls for the next stage and the answer
        carries the session view (``view``), kept in :attr:`carried` for :meth:`advance`."""
        params = {"wait": self.site.poll_timeout} if wait else None
        result: dict[str, Any] = self.site.call(
            "POST",
            f"/secagg/{kind}",
            params=params,
            content=message.model_dump_json(),
            headers={"Content-Type": "application/json"},
        ).json()
        view = result.get("view") if wait else None
        self.carried = view if isinstance(view, dict) else None  # an older server answers without one
        return result

    def advance(self, info: dict[str, Any]) -> dict[str, Any]:
        """Advance the secure round, then wait (long-poll) for whatever it waits on; returns fresh info.

        A stage message is posted with ``wait``: the server answers once the session has left that
        stage, with the new view, and the site acts on it directly (one request per stage). Without a
        view in the answer (an older server), or when the site had nothing to send, it long-polls
        ``GET /secagg`` for the session to leave the stage. Anything unexpected (another round, a closed
        round, a poll that timed out) goes back through ``/info``.
        """
        number = int(info["round"])
        given = info.get("secagg")  # the session view an /info answer carried (asked for with secagg)
        view: dict[str, Any] | None = given if isinstance(given, dict) else None
        while True:
            self.carried = None
            outcome = self.step(info, view, wait=True)
            if outcome == WAIT_ROUND:
                if info.get("round_state") == "open" and not info.get("selected", True):
                    self.site.emit("waiting", number, f"not drawn for round {number}", info=info)
                return self.site.info(wait_round=number, secagg=True)
            last = self.last_view
            if last.get("round") != number:
                return self.site.info(secagg=True)
            waited = (last.get("session"), last.get("stage"))
            view = self.carried
            if view is None:
                view = self.secagg_state(wait_session=waited[0], wait_stage=waited[1])
            if (
                view.get("round") != number
                or view.get("round_state") != "open"
                or (view.get("session"), view.get("stage")) == waited
            ):
                return self.site.info(secagg=True)

    # -- state on disk --------------------------------------------------------------------------
    def _masked_rounds(self) -> list[int]:
        rounds: list[int] = self.site.state.data.setdefault("secagg_masked_rounds", [])
        return rounds

    def _pins(self) -> dict[str, str]:
        pins: dict[str, str] = self.site.state.data.setdefault("peer_signing_keys", {})
        return pins

    # -- one step -------------------------------------------------------------------------------
    def step(
        self, info: Mapping[str, Any], view: Mapping[str, Any] | None = None, *, wait: bool = False
    ) -> str:
        """Do what the current stage asks of this site, if anything; returns what to wait for next.

        ``view`` is a session view the caller already holds (a long poll's answer), saving a request.
        With ``wait`` a stage message is posted as a long poll for the next stage (see :meth:`send`);
        without it the step never blocks on the server.
        """
        number = int(info["round"])
        if info.get("round_state") != "open" or not info.get("selected", True):
            return WAIT_ROUND
        if number in self._masked_rounds() and (self._client is None or self._round != number):
            return WAIT_ROUND
        if self._round != number:
            self._prepare(number)
        if view is None:
            view = self.secagg_state()
        self.last_view = dict(view)
        return self.handle(view, number, wait=wait)

    def handle(self, view: Mapping[str, Any], number: int, *, wait: bool = False) -> str:
        if view["round"] != number or view["round_state"] != "open":
            return WAIT_ROUND
        session, stage = view.get("session"), view.get("stage")
        if session is None or not view.get("member") or session in self._refused:
            return WAIT_STAGE if session is None or stage == "aborted" else WAIT_ROUND
        if session != self._session:
            if number in self._masked_rounds():
                return WAIT_ROUND  # our input is in another session's sum already
            if stage == "aborted":
                return WAIT_STAGE
        try:
            if session != self._session:
                self._join(view, number)
            assert self._client is not None
            return self._act(self._client, view, number, wait)
        except BastionClientError as exc:
            if exc.code in STALE:
                self._drop(str(session), f"{exc.message} ({exc.code})")
                return WAIT_STAGE
            raise
        except BastionError as exc:  # a check failed: refuse this session, keep the round's delta
            self._drop(str(session), exc.message, refuse=True)
            return WAIT_STAGE

    def _act(self, client: SecAggClient, view: Mapping[str, Any], number: int, wait: bool) -> str:
        stage, message = view["stage"], view.get("message")

        def send(kind: str, answer: BaseModel) -> None:  # unmasking is the last stage: nothing to wait for
            self.send(kind, answer, wait=wait and kind != "unmask")

        if stage == "aborted":
            self._drop(str(view["session"]), str(view.get("last_abort") or "the session was aborted"))
            return WAIT_STAGE if number not in self._masked_rounds() else WAIT_ROUND
        if stage == "advertise" and client.stage is ClientStage.ADVERTISE:
            send("advertise", client.advertise_keys())
            self.site.emit("secagg", number, "keys advertised", session=self._session)
            return PROGRESS
        if stage == "share" and message and client.stage is ClientStage.SHARE:
            send("shares", client.share_keys(KeysBroadcast.model_validate(message)))
            return PROGRESS
        if stage == "mask" and message and client.stage is ClientStage.MASK:
            assert self._vector is not None
            masked = client.masked_input(SharesDelivery.model_validate(message), self._vector)
            self._masked_rounds().append(number)
            self.site.state.save()  # before sending: never let this input into a second session
            send("masked", masked)
            self._vector = None
            self.site.emit(
                "sent",
                number,
                f"round {number} masked input sent",
                session=self._session,
                fit_seconds=self._fit_seconds,
            )
            return PROGRESS
        if stage == "unmask" and message and client.stage is ClientStage.UNMASK:
            send("unmask", client.unmask(UnmaskRequest.model_validate(message)))
            self.site.emit("secagg", number, "unmasking shares sent", session=self._session)
            return WAIT_ROUND
        if client.stage is ClientStage.DONE:
            return WAIT_ROUND
        return WAIT_STAGE

    # -- helpers --------------------------------------------------------------------------------
    def _prepare(self, number: int) -> None:
        """Train on the round's global model and keep the privatized delta (memory only)."""
        round_no, params, config = self.site.global_model()
        self.site.emit("training", round_no, f"training round {round_no}")
        started = time.perf_counter()
        result = self.site.trainer.fit(dict(params), config)
        self._fit_seconds = time.perf_counter() - started
        self._vector = privatize(result.params, params, dict(config.get("privacy") or {}))
        self._value_range = float((config.get("privacy") or {}).get("value_range") or 0.0)
        self._round, self._client, self._session = round_no, None, None

    def _join(self, view: Mapping[str, Any], number: int) -> None:
        session = str(view["session"])
        try:
            config = SecAggConfig.model_validate(view["config"])
            prefix = f"{self.site.federation_id}:{number}:"
            if config.round_id != session or not config.round_id.startswith(prefix):
                raise BastionError("the session does not belong to this federation's round")
            if self._vector is None or config.vector_length != self._vector.size:
                raise BastionError("the session's vector length does not match the model")
            if self._value_range and abs(config.clip - self._value_range) > 1e-9 * self._value_range:
                raise BastionError("the session's value range differs from the signed federation config")
            directory = self._check_directory(view)
        except (ValueError, KeyError, TypeError) as exc:
            self._refused.add(session)
            raise BastionError(f"malformed session description: {exc}") from None
        cid = int(view["client_id"])
        self._client = SecAggClient(config, cid, self.site.key, directory)
        self._session = session

    def _check_directory(self, view: Mapping[str, Any]) -> dict[int, Any]:
        """Peers' identity keys, checked against ``--peer-keys`` if given and the keys pinned at first sight."""
        pins, own = self._pins(), self.site.state.data.get("participant_id")
        mine = signing.encode_public_key(self.site.key)
        given = self.site.peer_keys
        directory: dict[int, Any] = {}
        fresh = False
        for cid, entry in dict(view["directory"]).items():
            pid, key = str(entry["participant_id"]), str(entry["signing_public_key"])
            if pid == own and key != mine:
                raise BastionError("the server lists a different identity key for this very site")
            if given is not None and pid != own and given.get(pid) != key:
                raise BastionError(
                    f"peer {pid} is not in the peer key list given to this site"
                    if pid not in given
                    else f"the identity key of peer {pid} differs from the peer key list: possible key substitution"
                )
            pinned = pins.get(pid)
            if pinned is None:
                pins[pid], fresh = key, True
            elif pinned != key:
                raise BastionError(
                    f"the identity key of peer {pid} differs from the one pinned at first contact: "
                    "possible key substitution"
                )
            directory[int(cid)] = signing.decode_public_key(key)
        if fresh:  # a first sight pinned a key: on disk before it is used
            self.site.state.save()
        return directory

    def _drop(self, session: str, reason: str, *, refuse: bool = False) -> None:
        if refuse:
            self._refused.add(session)
        if self._session == session:
            self._client, self._session = None, None
        self.site.emit("secagg_aborted", self._round, f"secure aggregation session {session}: {reason}")
