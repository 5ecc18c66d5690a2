"""The brokers' publishing contract, on the embedded broker and on the real RabbitMQ:
a batch arrives whole (RabbitMQ: written at once over several channels, every confirm
awaited), a key no queue is bound to is refused with ``unroutable`` (the outbox keeps
the rows), and a closed broker answers ``broker_unavailable``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from adapters.embedded_broker import EmbeddedBroker
from adapters.rabbitmq import PUBLISH_LANES, RabbitBroker
from hub.errors import Unavailable, Unroutable
from hub.ports import Broker, Message
from hub.service.topology import bindings, queue_name, routing_key
from tests.service import harness

PREFIX = "lt_test_" + uuid.uuid4().hex[:12]


@pytest.fixture(params=["embedded", "rabbitmq"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    prefix = PREFIX
    b: Broker
    if request.param == "rabbitmq":
        harness.require_services()
        b = RabbitBroker(harness.AMQP_URL, bindings(prefix), prefix=prefix)
    else:
        b = EmbeddedBroker(bindings(prefix))
    await b.connect()
    try:
        yield b
    finally:
        if isinstance(b, RabbitBroker):
            await b.delete_all()
        await b.close()


async def test_a_large_batch_arrives_whole_and_once(broker: Broker) -> None:
    n = 1000
    got: list[int] = []
    done = asyncio.Event()

    async def handler(m: Message) -> None:
        got.append(int(m.body["i"]))
        if len(got) == n:
            done.set()

    await broker.consume(queue_name(PREFIX, "local"), routing_key("local"), handler, 64)
    await broker.publish_many([Message(routing_key("local"), {"i": i}) for i in range(n)])
    await asyncio.wait_for(done.wait(), 30)
    await asyncio.sleep(0.2)  # a duplicate would arrive meanwhile
    assert sorted(got) == list(range(n))


async def test_a_key_no_queue_is_bound_to_is_refused(broker: Broker) -> None:
    with pytest.raises(Unroutable) as refused:
        await broker.publish_many(
            [Message(routing_key("local"), {"i": 1}), Message("delivery.nowhere", {"i": 2})]
        )
    assert refused.value.error_code == "unroutable" and refused.value.http_status == 503
    assert "delivery.nowhere" in refused.value.message


async def test_a_closed_broker_answers_unavailable(broker: Broker) -> None:
    await broker.close()
    with pytest.raises(Unavailable) as refused:
        await broker.publish_many([Message(routing_key("local"), {"i": 1})])
    assert refused.value.error_code == "broker_unavailable"
    await broker.connect()  # the fixture's teardown needs it open


async def test_rabbitmq_publishes_over_several_channels() -> None:
    harness.require_services()
    prefix = "lt_test_" + uuid.uuid4().hex[:12]
    b = RabbitBroker(harness.AMQP_URL, bindings(prefix), prefix=prefix)
    await b.connect()
    try:
        assert PUBLISH_LANES > 1 and len(b._lanes) == PUBLISH_LANES
        await b.publish_many([Message(routing_key("local"), {"i": i}) for i in range(40)])
        local = queue_name(prefix, "local")
        await harness.eventually(b.depth, lambda d: d.get(local) == 40, timeout=10)
    finally:
        await b.delete_all()
        await b.close()
