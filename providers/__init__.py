"""Provider plugins: the interface (base), discovery (registry) and the built-in clouds."""
