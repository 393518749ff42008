"""The engine fleet: the shared loop (``reconciler.py``) that keeps the fleet at the size the rules
ask for, and its backends (a Docker backend per endpoint, the static ``ENGINE_URLS`` fleet) with
their container specs, ports and Docker clients. It meets the data path only through the engine
pool (docs/TOPOLOGY.md)."""
