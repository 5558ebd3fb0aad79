from airq_nb.cli import main

raise SystemExit(main())
