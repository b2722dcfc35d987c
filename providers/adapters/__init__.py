"""Provider adapters: one module per provider, all implementing ``base.ProviderAdapter``."""
