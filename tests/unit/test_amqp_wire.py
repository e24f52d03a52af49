"""The publish frames packed by hand read back through pamqp, the codec aiormq uses."""

from __future__ import annotations

from datetime import UTC, datetime

from pamqp import commands as spec
from pamqp import frame as codec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from signup.adapters.amqp_wire import CHANNEL, Outgoing, encode_publish, short_string


def frames(data: bytes) -> list[object]:
    out = []
    while data:
        used, channel, value = codec.unmarshal(data)
        assert channel == CHANNEL
        out.append(value)
        data = data[used:]
    return out


def message(body: bytes) -> Outgoing:
    return Outgoing(
        message_id="6f1c2b1e-5d3a-4a8e-9a8c-0f9e8d7c6b5a",
        routing_key="user.new",
        body=body,
        content_type="application/cloudevents+json",
        type="user.new",
        app_id="signup",
        timestamp=datetime(2026, 11, 26, 6, 0, 5, tzinfo=UTC),
    )


def test_a_publish_is_method_header_and_body_as_the_codec_reads_them() -> None:
    body = b'{"id": "6f1c2b1e"}'
    method, header, content = frames(
        encode_publish(short_string("signup.events"), message(body), 4096)
    )
    assert isinstance(method, spec.Basic.Publish)
    assert (method.exchange, method.routing_key, method.mandatory) == (
        "signup.events",
        "user.new",
        True,
    )
    assert isinstance(header, ContentHeader) and header.body_size == len(body)
    props = header.properties
    assert props.delivery_mode == 2
    assert props.message_id == "6f1c2b1e-5d3a-4a8e-9a8c-0f9e8d7c6b5a"
    assert props.content_type == "application/cloudevents+json"
    assert (props.message_type, props.app_id) == ("user.new", "signup")
    assert props.timestamp == datetime(2026, 11, 26, 6, 0, 5, tzinfo=UTC)
    assert isinstance(content, ContentBody) and content.value == body


def test_a_body_larger_than_a_frame_is_split() -> None:
    body = bytes(range(256)) * 40  # 10,240 bytes
    parts = frames(encode_publish(short_string("x"), message(body), 4096))
    bodies = [p for p in parts if isinstance(p, ContentBody)]
    assert len(bodies) == 3 and all(len(b.value) <= 4096 - 8 for b in bodies)
    assert b"".join(b.value for b in bodies) == body
