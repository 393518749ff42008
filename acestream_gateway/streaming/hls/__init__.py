"""HLS cut by the gateway from a channel's shared TS (see docs/HLS.md)."""
