"""acestream-gateway: proxies AceStream channels to players and runs their engines."""

__version__ = "0.1.0"
