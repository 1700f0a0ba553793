"""What each component may publish and subscribe to on the bus, declared once (pure data).

`fnplane.bus.credentials` signs these lists into NATS user JWTs; the server enforces them. Every list
is an allow list: anything not named is refused (a publish gets a permissions violation, a
subscription is refused). NVCF grants its worker the same kind of list (reference/invocation.md 2.4).

    gateway  the request path's owner: queues, buckets (status, index, assets, signing key), results,
             its own inboxes; replies to workers; hears credential revocations and undeploys
    control  agent kicks and log requests (`fnplane.clusters.>`), revocation and undeploy broadcasts
    agent    its cluster's subjects; answers log requests; creates the queue and consumer of a
             version it starts an instance of
    worker   one version, one instance: pulls and acks on its version's queue, its version's cancel
             broadcast, its own inboxes, responses and body pulls to gateway inboxes, writes its
             version's status records and results; nothing else (no signing key, no assets, no other
             version, no account's results but its version's)
"""

from __future__ import annotations

from dataclasses import dataclass

from fnplane.shared import subjects

_API = "$JS.API"


@dataclass(frozen=True, slots=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...] = ()
    deny_subscribe: tuple[str, ...] = ()
    # replies to requests this user received, without a publish grant on the reply subject (`resp`)
    max_responses: int = 0


def gateway() -> Permissions:
    return Permissions(
        publish=(
            f"{subjects.PREFIX}.rq.>",
            f"{subjects.PREFIX}.cancel.*",
            f"{subjects.PREFIX}.gw.>",
            f"{subjects.PREFIX}.wk.>",
            # the gateway owns the topology: queues, consumers, buckets (every JetStream API call)
            f"{_API}.>",
            "$KV.>",
            "$O.>",
            "_INBOX.>",
        ),
        subscribe=(
            f"{subjects.PREFIX}.gw.>",
            "_INBOX.>",
            subjects.CREDENTIALS_REVOKED,
            subjects.VERSIONS_UNDEPLOYED,
        ),
    )


def control() -> Permissions:
    return Permissions(
        publish=(
            f"{subjects.PREFIX}.clusters.>",
            subjects.CREDENTIALS_REVOKED,
            subjects.VERSIONS_UNDEPLOYED,
            subjects.CONTROL_RECONCILE,
            subjects.CONTROL_OBSERVATIONS,
        ),
        subscribe=(
            f"{subjects.CONTROL_INBOX_PREFIX}.>",
            subjects.CONTROL_RECONCILE,
            subjects.CONTROL_OBSERVATIONS,
            # another replica's revocations: this one's authenticator forgets them too
            subjects.CREDENTIALS_REVOKED,
        ),
    )


def agent(cluster_name: str) -> Permissions:
    return Permissions(
        publish=(
            f"{subjects.CONTROL_INBOX_PREFIX}.>",
            # the queue of a version it starts an instance of (stream names are one token each, so
            # "FNPLANE_RQ_*" cannot be granted: any stream's info and create)
            f"{_API}.STREAM.INFO.*",
            f"{_API}.STREAM.CREATE.*",
        ),
        subscribe=(subjects.cluster_subjects(cluster_name),),
    )


def worker(version_id: str, instance_id: str) -> Permissions:
    """One instance's worker (NVCF's utils): its version and its own inboxes, nothing more."""
    stream = subjects.request_stream(version_id)
    consumer = subjects.REQUEST_CONSUMER
    status_stream = subjects.kv_stream(subjects.STATUS_BUCKET)
    status_keys = subjects.kv_subject(subjects.STATUS_BUCKET, subjects.status_keys(version_id))
    results = subjects.result_bucket(version_id)
    results_stream = subjects.object_stream(results)
    return Permissions(
        publish=(
            # its version's queue: pull, look, ack / nak / in-progress / term
            subjects.pull_request_subject(version_id),
            f"{_API}.CONSUMER.INFO.{stream}.{consumer}",
            f"{_API}.CONSUMER.CREATE.{stream}.{consumer}",
            f"{_API}.CONSUMER.CREATE.{stream}.{consumer}.>",
            f"{_API}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
            f"{_API}.STREAM.INFO.{stream}",
            f"$JS.ACK.{stream}.>",
            # responses and body pulls to the gateway that queued the request
            f"{subjects.PREFIX}.gw.*.r.*",
            f"{subjects.PREFIX}.gw.*.b.*",
            # its version's status records: write, and read back (direct get by subject)
            f"{_API}.STREAM.INFO.{status_stream}",
            f"{_API}.DIRECT.GET.{status_stream}.{status_keys}",
            status_keys,
            # its version's results object store: write and look (the agent or gateway creates it)
            f"{_API}.STREAM.INFO.{results_stream}",
            f"{_API}.STREAM.PURGE.{results_stream}",
            f"{_API}.STREAM.MSG.GET.{results_stream}",
            f"{_API}.DIRECT.GET.{results_stream}",
            f"{_API}.DIRECT.GET.{results_stream}.>",
            subjects.object_subjects(results),
        ),
        subscribe=(subjects.worker_subjects(instance_id), subjects.cancel_subject(version_id)),
        max_responses=1,
    )
