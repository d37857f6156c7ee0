from invdiff.cli import main

raise SystemExit(main())
