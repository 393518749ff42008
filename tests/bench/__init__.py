"""The benchmark suite (``make bench``): what fan-out costs the gateway next to the C floor, and
how long players wait for new data when the engine of their channel dies (failover).

Not a test suite: nothing here is collected by pytest (no ``test_`` modules). Every figure of one
run is measured on the same machine within minutes, so the ratios between them are what to read.
"""
