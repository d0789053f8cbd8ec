from llmctl.app.cli import main

main()
