"""The suite runs with the disk cache of recordings off (cache.py), so that every test sees the in-process
behaviour whatever an earlier run left on disk; tests/test_disk_cache.py turns it on in directories of its own."""

import os

os.environ["PEFT_FOOTPRINT_CACHE"] = "off"

from peft_footprint import cache  # noqa: E402

cache.configure(False)
