"""The only place that speaks HTTP to players and operators."""
