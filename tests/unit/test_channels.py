"""Asterisk channel names as attribution.calls reads them (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from attribution.calls import is_local_channel, local_partner

NAMES = st.text(st.characters(blacklist_characters=";"), max_size=30)


@given(NAMES, st.sampled_from(["1", "2"]))
def test_the_halves_of_a_local_channel_are_each_others_partner(name: str, half: str) -> None:
    channel = f"Local/{name}-0000000a;{half}"
    partner = local_partner(channel)
    assert partner != channel and partner.endswith(";1" if half == "2" else ";2")
    assert local_partner(partner) == channel and is_local_channel(partner)


@given(st.one_of(NAMES, NAMES.map(lambda n: f"PJSIP/{n};1"), NAMES.map(lambda n: f"Local/{n}")))
def test_any_other_channel_is_its_own_partner(channel: str) -> None:
    """A device's channel (whatever follows its name), or a Local one without its half."""
    assert local_partner(channel) == channel
