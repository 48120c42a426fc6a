"""Call provider webhooks: verify a request, then parse it into call events.

Each provider module exposes the same two functions:

- ``verify(req, secrets, now) -> None`` raises ``Unauthorized`` (401) for a
  missing or wrong signature or secret and ``Forbidden`` (403) for a replayed
  request or another account's api key; ``BadRequest`` (400) only when the
  request is too malformed to check (an unknown Zadarma event, a UIS body that
  is not JSON). Secrets are compared in constant time; a secret that is not
  configured is a ``ConfigError`` (500).
- ``parse(req, region, tz, *, now=None) -> list[CallEvent]`` raises
  ``BadRequest`` (400) for a malformed payload and returns ``[]`` for a valid
  event the product does not track (outgoing calls, voice-menu steps).
  ``region`` reads national numbers, ``tz`` the provider's local times and
  ``now`` (the receipt time) dates events that carry no time of their own.

The HTTP function calls, in order: ``zadarma.echo_response`` (Zadarma's URL
check), ``verify``, ``parse``, then ``shared.callmerge.merge`` per event.
"""

from __future__ import annotations

from shared.errors import NotFound
from shared.providers import generic, mango, twilio, uis, zadarma
from shared.providers.base import Provider, ProviderSecrets, WebhookRequest
from shared.providers.zadarma import echo_response

PROVIDERS: dict[str, Provider] = {
    module.NAME: Provider(module.NAME, module.verify, module.parse)
    for module in (twilio, mango, zadarma, uis, generic)
}


def get(name: str) -> Provider:
    """The provider called ``name``; NotFound for a name not in the registry."""
    provider = PROVIDERS.get(name)
    if provider is None:
        known = ", ".join(PROVIDERS)
        msg = f"Expected a call provider among {known}, found {name[:40]!r}."
        raise NotFound(msg, code="provider")
    return provider


__all__ = [
    "PROVIDERS",
    "Provider",
    "ProviderSecrets",
    "WebhookRequest",
    "echo_response",
    "get",
]
