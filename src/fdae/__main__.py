from fdae.cli import main

raise SystemExit(main())
