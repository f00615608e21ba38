"""Provider adapters by model ``type``. Importing a module registers its types."""

from workers.providers import anthropic, openai, vertex  # noqa: F401  (registration)
from workers.providers.base import PROVIDERS, Provider


def provider_for(model, deployment=None) -> Provider:
    """The adapter for ``model`` (a ``ModelConfig``), or for one of its deployments (a ``DeploymentConfig``)."""
    if deployment is not None:
        provider = provider_for(model.for_deployment(deployment))
        provider.deployment = deployment.name
        return provider
    try:
        return PROVIDERS[model.type](model)
    except KeyError:
        raise LookupError(f"no provider adapter for model type '{model.type}'") from None


__all__ = ["PROVIDERS", "Provider", "provider_for"]
