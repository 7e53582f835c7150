from clustertop.cli.main import main

raise SystemExit(main())
