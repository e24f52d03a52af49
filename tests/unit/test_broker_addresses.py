"""SIGNUP_AMQP_URL with several broker addresses: parsing, order, rotation, no password shown."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from signup.adapters.broker_nodes import BrokerNodes
from signup.addresses import amqp_node, split_amqp_urls
from signup.settings import Settings

SECRET = "s3cr3t-Pa55"


class InOrder(random.Random):
    def shuffle(self, x: list[object]) -> None:  # type: ignore[override]
        """Keep the order written."""


def test_one_address_is_itself() -> None:
    assert split_amqp_urls("amqp://guest:guest@localhost:5672/") == (
        "amqp://guest:guest@localhost:5672/",
    )


def test_host_only_addresses_take_scheme_credentials_vhost_and_options_of_the_first() -> None:
    urls = split_amqp_urls(
        f"amqps://app:{SECRET}@rabbit-1:5671/prod?heartbeat=20&cafile=/ca.pem, rabbit-2 ,"
        "10.0.0.3:5999,[fd00::4]:5671"
    )
    assert urls == (
        f"amqps://app:{SECRET}@rabbit-1:5671/prod?heartbeat=20&cafile=/ca.pem",
        f"amqps://app:{SECRET}@rabbit-2/prod?heartbeat=20&cafile=/ca.pem",
        f"amqps://app:{SECRET}@10.0.0.3:5999/prod?heartbeat=20&cafile=/ca.pem",
        f"amqps://app:{SECRET}@[fd00::4]:5671/prod?heartbeat=20&cafile=/ca.pem",
    )
    assert [amqp_node(url) for url in urls] == [
        "rabbit-1:5671",
        "rabbit-2:5671",  # amqps' default port
        "10.0.0.3:5999",
        "[fd00::4]:5671",
    ]


def test_whole_urls_are_kept_as_written() -> None:
    urls = split_amqp_urls("amqp://a:b@h1/v,amqp://a:b@h2:5673/v")
    assert urls == ("amqp://a:b@h1/v", "amqp://a:b@h2:5673/v")
    assert [amqp_node(u) for u in urls] == ["h1:5672", "h2:5673"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        " , ",
        f"amqp://u:{SECRET}@h1/,,h2",
        f"http://u:{SECRET}@h1/",
        f"amqp://u:{SECRET}@h1/,h2:notaport",
        f"amqp://u:{SECRET}@h1/,user@h2",
        f"amqp://u:{SECRET}@h1/,h2/vhost",
        f"amqp://u:{SECRET}@h1/,redis://u:{SECRET}@h2/",
        f"amqp://u:{SECRET}@:5672/",
    ],
)
def test_a_bad_address_is_refused_without_its_password(value: str) -> None:
    with pytest.raises(ValueError) as refused:
        split_amqp_urls(value)
    assert SECRET not in str(refused.value)
    with pytest.raises(ValidationError) as invalid:
        Settings(_env_file=None, amqp_url=value)  # type: ignore[arg-type]
    assert SECRET not in str(invalid.value)
    assert SECRET not in repr(invalid.value.errors(include_input=False))


def test_settings_give_every_address() -> None:
    settings = Settings(_env_file=None, amqp_url=f"amqp://u:{SECRET}@h1/v,h2,h3:5673")  # type: ignore[arg-type]
    assert [amqp_node(u) for u in settings.amqp_urls] == ["h1:5672", "h2:5672", "h3:5673"]
    assert SECRET not in repr(settings) and SECRET not in str(settings.amqp_url)


def test_nodes_rotate_through_every_address_and_wrap() -> None:
    nodes = BrokerNodes.parse(f"amqp://u:{SECRET}@h1/,h2,h3", rng=InOrder())
    assert len(nodes) == 3
    seen = [nodes.node]
    for _ in range(3):
        nodes.advance()
        seen.append(nodes.node)
    assert seen == ["h1:5672", "h2:5672", "h3:5672", "h1:5672"]
    assert nodes.url == f"amqp://u:{SECRET}@h1/"
    assert all(SECRET not in node for node in nodes.nodes)


def test_each_process_shuffles_its_own_order() -> None:
    value = ",".join(["amqp://u:p@h0/", *(f"h{i}" for i in range(1, 6))])
    orders = {BrokerNodes.parse(value, rng=random.Random(seed)).nodes for seed in range(20)}
    assert len(orders) > 5, "the order is shuffled"
    assert all(sorted(order) == sorted(next(iter(orders))) for order in orders)
    firsts = {order[0] for order in orders}
    assert len(firsts) >= 3, "instances start on different nodes"
    one = BrokerNodes.parse("amqp://u:p@h0/", rng=random.Random(1))
    assert one.advance() == "amqp://u:p@h0/" and one.node == "h0:5672"
