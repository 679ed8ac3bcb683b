"""Device-side applications (what a phone does, in Python). Never imports `pipeline`."""
