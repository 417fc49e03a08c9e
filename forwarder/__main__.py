"""`python -m forwarder` == `virtio-forwarder`."""
from .daemon import main

raise SystemExit(main())
