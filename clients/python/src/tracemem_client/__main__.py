import sys

from tracemem_client.cli import main

sys.exit(main())
