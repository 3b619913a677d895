"""Domain plugins: the contract (spec), the manager, and the built-in domains."""
