"""Secrets sealed at rest: readable back with the server key only."""

from __future__ import annotations

import stat

import pytest

from openbailian.config import Settings
from openbailian.crypto import SecretBox, SecretUnreadable


def test_a_sealed_secret_opens_with_the_same_key_and_hides_the_plaintext(tmp_path):
    box = SecretBox.from_settings(Settings(home=tmp_path))
    sealed = box.seal("my-plugin-token-123")
    assert "my-plugin-token-123" not in sealed
    assert SecretBox.from_settings(Settings(home=tmp_path)).open(sealed) == "my-plugin-token-123"
    key_file = tmp_path / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_another_key_or_an_altered_value_cannot_open_it(tmp_path):
    sealed = SecretBox("key-one").seal("secret")
    with pytest.raises(SecretUnreadable):
        SecretBox("key-two").open(sealed)
    with pytest.raises(SecretUnreadable):
        SecretBox("key-one").open(sealed[:-4] + "AAAA")
    with pytest.raises(SecretUnreadable):
        SecretBox("key-one").open("plaintext")


def test_the_configured_key_wins_over_the_generated_file(tmp_path):
    sealed = SecretBox.from_settings(Settings(home=tmp_path, secret_key="configured")).seal("x")
    assert SecretBox("configured").open(sealed) == "x"
    assert not (tmp_path / "secret.key").exists()
