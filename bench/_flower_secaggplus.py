"""Flower's SecAgg+ (flwr's SecAggPlusWorkflow + secaggplus_mod) driven in one process, for bench/secagg.py.

Run by bench/secagg.py with a Python that has flwr installed (never Bastion's venv). It replaces
Flower's network Grid with an in-memory one that still serializes every message to Flower's protobuf
wire form, so server time, client time and bytes are measured the way bench/secagg.py measures
Bastion's. Prints one JSON object. Without flwr it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from typing import Any


def updates_for(n: int, d: int, clip: float, seed: int) -> Any:
    """The same updates bench/secagg.py generates (same numpy generator and seed)."""
    import numpy as np

    return np.random.default_rng(seed).uniform(-clip / 2, clip / 2, size=(n, d)).astype(np.float32)


def run(n: int, d: int, k: int, t: int, dropout: float, clip: float, seed: int) -> dict[str, Any]:
    import numpy as np
    from flwr.app import ConfigRecord, Context, Message, RecordDict
    from flwr.client.mod.secure_aggregation.secaggplus_mod import secaggplus_mod
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.common.serde import message_from_proto, message_to_proto
    from flwr.compat.common import recorddict_compat as compat
    from flwr.proto.message_pb2 import Message as ProtoMessage
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.client_proxy import ClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.secure_aggregation.secaggplus_workflow import SecAggPlusWorkflow
    from flwr.serverapp.grid import Grid
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1  # what a SuperLink would set
    updates = updates_for(n, d, clip, seed)
    node_ids = list(range(1, n + 1))
    n_drop = round(dropout * n)
    dropped = set(node_ids[:n_drop])  # vanish after sharing keys, before sending a masked vector

    class Proxy(ClientProxy):
        def get_properties(self, *a: Any, **kw: Any) -> Any:
            raise NotImplementedError

        def get_parameters(self, *a: Any, **kw: Any) -> Any:
            raise NotImplementedError

        def fit(self, *a: Any, **kw: Any) -> Any:
            raise NotImplementedError

        def evaluate(self, *a: Any, **kw: Any) -> Any:
            raise NotImplementedError

        def reconnect(self, *a: Any, **kw: Any) -> Any:
            raise NotImplementedError

    class PassThroughFedAvg(FedAvg):
        """FedAvg whose aggregate_fit returns the workflow's already-averaged parameters unchanged."""

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            return results[0][1].parameters, {}

    client_seconds = dict.fromkeys(node_ids, 0.0)
    bytes_sent = dict.fromkeys(node_ids, 0)
    contexts = {
        nid: Context(run_id=1, node_id=nid, node_config={}, state=RecordDict(), run_config={})
        for nid in node_ids
    }

    def fit(msg: Message, ctxt: Context) -> Message:
        nid = ctxt.node_id
        res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([updates[nid - 1]]), 1, {})
        return Message(compat.fitres_to_recorddict(res, keep_input=True), reply_to=msg)

    class InMemoryGrid(Grid):
        def __init__(self) -> None:
            self.server_serde = 0.0
            self.stage = 0

        def set_run(self, run: Any) -> None:
            pass

        @property
        def run(self) -> Any:
            raise NotImplementedError

        def create_message(self, *a: Any, **kw: Any) -> Message:
            raise NotImplementedError

        def get_node_ids(self) -> Iterable[int]:
            return node_ids

        def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
            raise NotImplementedError

        def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
            raise NotImplementedError

        def send_and_receive(
            self, messages: Iterable[Message], *, timeout: float | None = None
        ) -> list[Message]:
            replies = []
            stage = self.stage
            self.stage += 1
            for i, msg in enumerate(messages):
                msg.metadata.__dict__["_message_id"] = f"m{stage}-{i}"
                start = time.perf_counter()
                wire = message_to_proto(msg).SerializeToString()
                self.server_serde += time.perf_counter() - start
                nid = msg.metadata.dst_node_id
                if nid in dropped and stage == 2:
                    continue
                start = time.perf_counter()
                proto = ProtoMessage()
                proto.ParseFromString(wire)
                incoming = message_from_proto(proto)
                reply = secaggplus_mod(incoming, contexts[nid], fit)
                reply.metadata.__dict__["_message_id"] = f"r{stage}-{i}"
                out = message_to_proto(reply).SerializeToString()
                client_seconds[nid] += time.perf_counter() - start
                bytes_sent[nid] += len(out)
                start = time.perf_counter()
                proto = ProtoMessage()
                proto.ParseFromString(out)
                replies.append(message_from_proto(proto))
                self.server_serde += time.perf_counter() - start
            return replies

    manager = SimpleClientManager()
    for nid in node_ids:
        proxy = Proxy(str(nid))
        proxy.node_id = nid
        manager.register(proxy)
    strategy = PassThroughFedAvg(fraction_fit=1.0, min_fit_clients=n, min_available_clients=n)
    base = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    context = LegacyContext(base, strategy=strategy, client_manager=manager)
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({"current_round": 1})
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters([np.zeros(d, dtype=np.float32)]), keep_input=True
    )
    workflow = SecAggPlusWorkflow(
        num_shares=k,
        reconstruction_threshold=t,
        max_weight=1.0,
        clipping_range=clip,
        quantization_range=2**22,
    )
    grid = InMemoryGrid()
    start = time.perf_counter()
    workflow(grid, context)
    total = time.perf_counter() - start
    params = context.state.array_records[MAIN_PARAMS_RECORD]
    mean = parameters_to_ndarrays(compat.arrayrecord_to_parameters(params, keep_input=True))[0]
    survivors = [nid for nid in node_ids if nid not in dropped]
    expected = updates[[nid - 1 for nid in survivors]].astype(np.float64).mean(axis=0)
    active_clients = [c for c in node_ids if client_seconds[c] > 0]
    return {
        "server_seconds": total - sum(client_seconds.values()),
        "client_seconds_mean": sum(client_seconds[c] for c in survivors) / len(survivors),
        "bytes_sent_mean": sum(bytes_sent[c] for c in survivors) / len(survivors),
        "max_abs_error_vs_plain_mean": float(np.max(np.abs(mean - expected))),
        "clients_answering": len(active_clients),
        "flwr_version": __import__("flwr").__version__,
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--params", type=int, required=True)
    p.add_argument("--neighbours", type=int, required=True)
    p.add_argument("--threshold", type=int, required=True)
    p.add_argument("--dropout", type=float, required=True)
    p.add_argument("--clip", type=float, required=True)
    p.add_argument("--seed", type=int, required=True)
    if len(sys.argv) == 1:
        print("_flower_secaggplus.py is a helper of bench/secagg.py; run that instead")
        return 0
    a = p.parse_args()
    try:
        import flwr  # noqa: F401
    except ImportError:
        print(json.dumps({"skipped": "flwr is not installed in this Python"}))
        return 0
    import logging

    logging.getLogger("flwr").setLevel(logging.WARNING)
    print(json.dumps(run(a.clients, a.params, a.neighbours, a.threshold, a.dropout, a.clip, a.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
