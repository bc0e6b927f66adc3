from prunebench.cli import main

raise SystemExit(main())
