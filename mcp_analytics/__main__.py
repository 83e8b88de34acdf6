from mcp_analytics.cli import main

raise SystemExit(main())
