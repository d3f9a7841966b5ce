from pointformer.cli import main

raise SystemExit(main())
