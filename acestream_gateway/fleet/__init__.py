"""The engine fleet: container specs, ports, the Docker client, and the reconciler that keeps the
fleet at the size the rules ask for. It meets the data path only through the engine pool."""
