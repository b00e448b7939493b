"""The benchmark profile ``vp.bench.noop``."""
