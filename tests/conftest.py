from __future__ import annotations

import os

from hypothesis import settings as hypothesis_settings

hypothesis_settings.register_profile("ci", max_examples=60, deadline=None)
hypothesis_settings.register_profile("dev", max_examples=30, deadline=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")
