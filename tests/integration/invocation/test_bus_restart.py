"""The request path after its nats-server restarted: gateway and worker process reconnect by themselves.

The server is killed with SIGKILL and started again on the same port. Here it comes back *without* its
store (an external NATS without persistence, a wiped data directory): the version's queue and its
durable consumer are gone. The gateway re-creates the queue on its next publish; the worker, told by
its client that it reconnected, drops the pull requests the old server held, re-creates its consumer
and pulls again, so the next call is served instead of waiting out its poll window.
"""

from __future__ import annotations

import shutil

from invocation_stack import spawn, wait_port


async def test_the_next_call_is_served_after_the_server_came_back_without_its_store(stack, tmp_path):
    fn = await stack.deploy(name="r", inference_url="/slow")
    port = await stack.function_process()
    await stack.worker_process(fn, port)
    url = f"/v2/nvcf/pexec/functions/{fn['id']}"
    poll = {"NVCF-POLL-SECONDS": "15"}
    first = await stack.client.post(url, headers=poll, json={"seconds": 0})
    assert first.status_code == 200, first.text

    # the embedded server of the stack is not restarted (restart_limit 0): this test restarts it,
    # closed as before (the same operator config) but with an empty store
    await stack.bus.kill()
    shutil.rmtree(stack.bus.home / "nats" / "jetstream")
    nats_port = int(stack.nats_url.rsplit(":", 1)[1])
    stack.processes.append(spawn(stack.bus.restart_command(nats_port, tmp_path / "nats-empty")))
    await wait_port(nats_port)

    again = await stack.client.post(url, headers=poll, json={"seconds": 0})
    assert again.status_code == 200, again.text
    assert again.json()["pid"] == first.json()["pid"], "the same instance serves"
