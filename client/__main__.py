"""``python -m funasr_wss.client``: the same as the ``funasr-wss-client`` console script."""
import sys

from .cli import main

sys.exit(main())
